"""`.deb` files kept by sha256, and the local apt repository a root filesystem is installed from.

A root filesystem is installed from a repository that holds exactly its locked files and
nothing else, so mmdebstrap (whose essential phase takes the newest Essential:yes packages
it sees) cannot pick anything but the locked set, and a file the mirror dropped long ago
installs as well as one it still serves.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from ..errors import FxError
from .deb822 import paragraphs
from .debian_lock import LockedDeb
from .store import atomic_write_bytes, sha256_file

REPO_SUITE = "bookworm"


class DebCache:
    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / f"{sha256}.deb"

    def has(self, deb: LockedDeb) -> bool:
        return bool(deb.sha256) and self.path(deb.sha256).is_file()

    def add(self, file: Path) -> tuple[str, str, str, str]:
        """Move a fetched .deb in under its sha256; returns (sha256, name, version, arch)."""
        digest = sha256_file(file)
        control = _control(file)
        fields = paragraphs(control)[0]
        target = self.path(digest)
        if not target.exists():
            tmp = target.with_name(f".{digest}.tmp")
            shutil.copyfile(file, tmp)
            os.replace(tmp, target)
        atomic_write_bytes(target.with_suffix(".control"), control.encode())
        return digest, fields["Package"], fields["Version"], fields["Architecture"]

    def control(self, sha256: str) -> str:
        path = self.path(sha256).with_suffix(".control")
        if not path.is_file():
            atomic_write_bytes(path, _control(self.path(sha256)).encode())
        return path.read_text()

    def write_repo(self, debs: list[LockedDeb], repo: Path) -> None:
        """A flat repository (`deb [trusted=yes] copy:///repo ./`) of exactly these files."""
        repo.mkdir(parents=True, exist_ok=True)
        paragraphs = []
        for deb in debs:
            src = self.path(deb.sha256)
            if sha256_file(src) != deb.sha256:
                src.unlink()
                raise FxError(f"cached file of {deb.name} {deb.version} no longer has its sha256",
                              where=str(src), hint="it was removed; build again to fetch it afresh")
            dst = repo / deb.filename
            try:
                os.link(src, dst)
            except OSError:
                shutil.copyfile(src, dst)
            paragraphs.append(self.control(deb.sha256).rstrip("\n")
                              + f"\nFilename: ./{deb.filename}\nSize: {src.stat().st_size}"
                              f"\nSHA256: {deb.sha256}\n")
        packages = "\n".join(paragraphs).encode()
        (repo / "Packages").write_bytes(packages)
        # Suite/Codename: mmdebstrap takes Essential:yes packages only from an archive whose
        # suite or codename is the one it builds.
        (repo / "Release").write_text(
            f"Origin: fxstack\nLabel: debian.lock\nSuite: {REPO_SUITE}\nCodename: {REPO_SUITE}\n"
            "Architectures: amd64 all\nComponents: main\nSHA256:\n"
            f" {hashlib.sha256(packages).hexdigest()} {len(packages)} Packages\n")


def _control(deb: Path) -> str:
    proc = subprocess.run(["dpkg-deb", "--field", str(deb)], capture_output=True, text=True)
    if proc.returncode != 0:
        raise FxError(f"not a readable .deb: {proc.stderr.strip()}", where=str(deb))
    return proc.stdout
