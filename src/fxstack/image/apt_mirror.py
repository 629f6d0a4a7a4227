"""The Debian mirror, through apt with a private state: what it serves, and fetching exact files.

apt runs with its own lists, cache and an empty dpkg status under the builder's cache, so
nothing of the host's apt state is read or changed and the host's own upgrades do not move
what we see. The sources are the host's Debian 12 sources, or FXSTACK_DEBIAN_MIRROR: apt
source lines separated by `;` or newlines, or the path of a sources file; `{snapshot}` in
them becomes a lock entry's resolve time, so a snapshot.debian.org mirror serves the files
that entry pins:

    FXSTACK_DEBIAN_MIRROR='deb http://snapshot.debian.org/archive/debian/{snapshot} bookworm bookworm-updates main;
                           deb http://snapshot.debian.org/archive/debian-security/{snapshot} bookworm-security main'
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from ..errors import FxError
from .store import file_lock

HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
LEGACY_SOURCES = Path("/etc/apt/sources.list")
# How old the mirror's index may be before a build fetches it again (to notice updates).
DEFAULT_INDEX_TTL = 3600


@dataclass(frozen=True)
class Offer:
    """One version of a package that the mirror serves, and the suite it comes from."""

    version: str
    suite: str


def configured_sources(snapshot: str = "") -> tuple[str, str]:
    """(text, file suffix) of the sources to resolve and fetch from."""
    value = os.environ.get("FXSTACK_DEBIAN_MIRROR", "").strip()
    if value:
        path = Path(value)
        if "\n" not in value and ";" not in value and path.is_file():
            text, suffix = path.read_text(), ".sources" if path.suffix == ".sources" else ".list"
        else:
            text = "".join(line.strip() + "\n" for line in value.replace(";", "\n").splitlines() if line.strip())
            suffix = ".list"
        if "{snapshot}" in text:
            if not snapshot:
                raise FxError("FXSTACK_DEBIAN_MIRROR has {snapshot} but there is no resolve time to put there",
                              where="FXSTACK_DEBIAN_MIRROR",
                              hint="set FXSTACK_DEBIAN_SNAPSHOT=YYYYMMDDTHHMMSSZ to resolve against a snapshot")
            text = text.replace("{snapshot}", snapshot)
        return text, suffix
    if HOST_SOURCES.is_file():
        return HOST_SOURCES.read_text(), ".sources"
    if LEGACY_SOURCES.is_file() and LEGACY_SOURCES.read_text().strip():
        return LEGACY_SOURCES.read_text(), ".list"
    raise FxError("no Debian apt sources found", where=str(HOST_SOURCES),
                  hint="configure apt for Debian 12, or set FXSTACK_DEBIAN_MIRROR to apt source lines")


def state_dir_for(cache_root: Path, sources: str) -> Path:
    """Where apt keeps its state (the index too) for `sources` under `cache_root`."""
    return cache_root / "apt" / hashlib.sha256(sources.encode()).hexdigest()[:16]


class AptMirror:
    """apt over one set of sources, with its state in `cache_root/apt/<hash of the sources>`."""

    def __init__(self, cache_root: Path, sources: str, suffix: str, log: Callable[[str], None]):
        self.dir = state_dir_for(cache_root, sources)
        self.log = log
        self.sources_file = self.dir / "etc" / f"mirror{suffix}"
        for sub in ("etc", "lists/partial", "archives/partial"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        if not self.sources_file.is_file() or self.sources_file.read_text() != sources:
            self.sources_file.write_text(sources)
        (self.dir / "status").touch()
        self._fresh = False

    def _options(self) -> list[str]:
        d = self.dir
        return ["-oDir::Etc::SourceList=/dev/null", f"-oDir::Etc::SourceParts={d / 'etc'}",
                f"-oDir::State={d}", f"-oDir::State::Lists={d / 'lists'}", f"-oDir::State::status={d / 'status'}",
                f"-oDir::Cache={d}", f"-oDir::Cache::Archives={d / 'archives'}",
                "-oAcquire::Languages=none", "-oAPT::Sandbox::User=root", "-oDebug::NoLocking=1",
                "-oAcquire::Retries=3"]

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([tool, *self._options(), *args], cwd=cwd, capture_output=True, text=True,
                              env={**os.environ, "LC_ALL": "C"})

    @contextmanager
    def _locked(self) -> Iterator[None]:
        with file_lock(self.dir / ".lock"):
            yield

    def index_age(self) -> float | None:
        stamp = self.dir / "updated"
        return time.time() - stamp.stat().st_mtime if stamp.exists() else None

    def refresh(self, *, max_age: float | None = None, required: bool = True) -> bool:
        """Fetch the mirror's index unless one younger than `max_age` is here. Returns whether an
        index is available; without network, an older index serves (and a warning says so)."""
        if max_age is None:
            max_age = float(os.environ.get("FXSTACK_DEBIAN_INDEX_TTL", DEFAULT_INDEX_TTL))
        with self._locked():
            age = self.index_age()
            if self._fresh or (age is not None and age < max_age):
                return True
            proc = self._run("apt-get", "update")
            failed = proc.returncode != 0 or "\nW: Failed to fetch" in "\n" + proc.stderr \
                or "\nE:" in "\n" + proc.stderr
            if failed:
                tail = "\n".join(proc.stderr.strip().splitlines()[-6:])
                if age is None and required:
                    raise FxError(f"cannot read the Debian mirror's index:\n{tail}", where=str(self.sources_file),
                                  hint="check the network or FXSTACK_DEBIAN_MIRROR; a machine that built "
                                       "once rebuilds from its .deb cache without the mirror")
                self.log(f"debian: the mirror's index could not be refreshed ({tail.splitlines()[-1] if tail else 'no output'});"
                         " using the one from an earlier build" if age is not None else
                         "debian: the mirror's index could not be read; nothing about updates is known")
                return age is not None
            (self.dir / "updated").touch()
            self._fresh = True
            return True

    def copy_lists(self, dest: Path) -> None:
        """The index as it is now (InRelease and Packages files, already verified by apt),
        copied to `dest`: what a resolve hands mmdebstrap instead of its own `apt-get update`,
        which downloaded the mirror's whole index again for every resolve."""
        dest.mkdir(parents=True, exist_ok=True)
        with self._locked():
            for entry in (self.dir / "lists").iterdir():
                if entry.is_file() and entry.name != "lock":
                    shutil.copy2(entry, dest / entry.name)

    def offers(self, names: list[str]) -> dict[str, list[Offer]]:
        """{package: versions the mirror serves, newest first}; a package it lacks is absent."""
        found: dict[str, list[Offer]] = {}
        for i in range(0, len(names), 200):
            proc = self._run("apt-cache", "madison", *names[i:i + 200])
            for line in proc.stdout.splitlines():
                parts = [p.strip() for p in line.split("|")]
                if len(parts) != 3 or not parts[2].endswith("Packages"):
                    continue
                name, version, where = parts
                fields = where.split()
                suite = fields[1].split("/")[0] if len(fields) > 1 else ""
                offer = Offer(version, suite)
                if offer not in found.setdefault(name, []):
                    found[name].append(offer)
        return found

    def download(self, wanted: list[tuple[str, str]], dest: Path) -> list[Path]:
        """Fetch `name=version` files into `dest` (apt checks them against the signed index)."""
        if not wanted:
            return []
        dest.mkdir(parents=True, exist_ok=True)
        proc = self._run("apt-get", "download", *(f"{n}={v}" for n, v in wanted), cwd=dest)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            raise FxError(f"apt-get download failed:\n{tail}", where=str(self.sources_file),
                          hint="the mirror may have dropped a version between index and download: build again")
        return sorted(dest.glob("*.deb"))


def newer(a: str, b: str) -> bool:
    """Whether Debian version `a` sorts after `b` (dpkg's own comparison)."""
    return subprocess.run(["dpkg", "--compare-versions", a, "gt", b]).returncode == 0
