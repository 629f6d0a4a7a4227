"""Root filesystems from Debian 12 packages with mmdebstrap, every package version pinned.

`images/debian.lock` records, per package set, the exact version of every package that
went into the root filesystem. A build installs exactly those versions; when the mirror
no longer has one, the build stops and says how to refresh the pins, so drift shows up
as a change to a committed file rather than as a silently different image.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import FxError
from .settings import BUILDER_VERSION, SOURCE_DATE_EPOCH
from .store import BlobStore, KeyedCache, atomic_write_bytes, inputs_key
from .tarball import normalize_tar

SUITE = "bookworm"
HOST_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")
# Docs, man pages and translations are dead weight in a container.
DPKG_EXCLUDES = ["/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*",
                 "/usr/share/info/*", "/usr/share/lintian/*"]
DPKG_INCLUDES = ["/usr/share/doc/*/copyright"]
# init-system-helpers needs `usrmerge | usr-is-merged`; left to itself apt picks usrmerge,
# which drags in a full Perl (~50 MB per root filesystem). mmdebstrap's merged-usr hook lays
# out the /usr symlinks the way debootstrap does and installs the empty usr-is-merged instead.
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")
# dpkg without fsync inside the throw-away build root: same files, a fraction of the time.
EATMYDATA_HOOKS = Path("/usr/share/mmdebstrap/hooks/eatmydata")


@dataclass(frozen=True)
class RootfsRecipe:
    """What makes a root filesystem: its packages, plus the user and directories we add."""

    packages: tuple[str, ...]
    user: str = "root"
    uid: int | None = None
    owned_dirs: tuple[str, ...] = ()     # created and owned by `user`
    root_dirs: tuple[str, ...] = ()      # created, owned by root

    @property
    def lock_key(self) -> str:
        return " ".join(sorted(self.packages))


def _drop(name: str) -> bool:
    """Members of mmdebstrap's tar that must not be in a layer."""
    return (name.startswith("dev/") or name.startswith("var/log/") or name.endswith("-old")
            or name.startswith("var/cache/apt/") or name.startswith("var/lib/apt/lists/")
            or name.startswith("proc/") or name.startswith("sys/"))


class DebianLock:
    def __init__(self, path: Path):
        self.path = path
        try:
            self.data: dict[str, dict[str, str]] = json.loads(path.read_text())
        except FileNotFoundError:
            self.data = {}
        except json.JSONDecodeError as exc:
            raise FxError(f"not valid JSON: {exc}", where=str(path),
                          hint="restore it from git or delete it and build with --update-debian-lock")

    def pins(self, recipe: RootfsRecipe) -> dict[str, str] | None:
        return self.data.get(recipe.lock_key)

    def record(self, recipe: RootfsRecipe, versions: dict[str, str]) -> None:
        self.data[recipe.lock_key] = dict(sorted(versions.items()))
        text = json.dumps(dict(sorted(self.data.items())), indent=1) + "\n"
        atomic_write_bytes(self.path, text.encode())


def _sources() -> Path:
    if HOST_SOURCES.is_file():
        return HOST_SOURCES
    legacy = Path("/etc/apt/sources.list")
    if legacy.is_file() and legacy.read_text().strip():
        return legacy
    raise FxError("no Debian apt sources found", where=str(HOST_SOURCES),
                  hint="mmdebstrap takes the host's Debian 12 apt sources; configure apt first")


# What the build host or a package's postinst leaves behind that differs from run to run or
# machine to machine: the host's name and resolver (Docker supplies both at run time), the
# snake-oil TLS key ssl-cert generates, and the default cluster postgresql-common creates
# (random system identifier; our entrypoint makes its own cluster in PGDATA).
NEUTRALIZE = (
    'printf "localhost\\n" > "$1/etc/hostname"'
    ' && printf "127.0.0.1\\tlocalhost\\n::1\\tlocalhost ip6-localhost ip6-loopback\\n" > "$1/etc/hosts"'
    ' && rm -f "$1/etc/resolv.conf" && : > "$1/etc/resolv.conf"'
    ' && rm -f "$1/etc/ssl/private/ssl-cert-snakeoil.key" "$1/etc/ssl/certs/ssl-cert-snakeoil.pem"'
    ' && { [ ! -d "$1/etc/ssl/certs" ] || chroot "$1" find /etc/ssl/certs -xtype l -delete; }'
    ' && for c in "$1"/etc/postgresql/*/main; do [ -d "$c" ] || continue;'
    ' v=$(basename "$(dirname "$c")"); rm -rf "$c" "$1/var/lib/postgresql/$v/main"; done'
)


def _hooks(recipe: RootfsRecipe, versions_out: Path) -> list[str]:
    q = shlex.quote
    hooks = [NEUTRALIZE]
    if recipe.uid is not None and recipe.user != "root":
        uid, user = recipe.uid, recipe.user
        hooks.append(
            f'echo "{user}:x:{uid}:{uid}::/home/{user}:/usr/sbin/nologin" >> "$1/etc/passwd"'
            f' && echo "{user}:x:{uid}:" >> "$1/etc/group"'
            f' && echo "{user}:!:19000::::::" >> "$1/etc/shadow"'
            f' && mkdir -p "$1/home/{user}" && chown {uid}:{uid} "$1/home/{user}"')
    for d in recipe.root_dirs:
        hooks.append(f'mkdir -p "$1"{q(d)}')
    for d in recipe.owned_dirs:
        hooks.append(f'mkdir -p "$1"{q(d)} && chroot "$1" chown {q(recipe.user)}: {q(d)}')
    # Rebuild the linker cache last, so helpers present during the build (eatmydata's
    # library) leave no trace in it.
    hooks.append('chroot "$1" /sbin/ldconfig')
    hooks.append("dpkg-query --admindir=\"$1/var/lib/dpkg\" -W -f='${Package}\\t${Version}\\n'"
                 f" > {q(str(versions_out))}")
    return hooks


def _cache_key(recipe: RootfsRecipe, pins: dict[str, str] | None) -> str:
    return inputs_key("rootfs", BUILDER_VERSION, SOURCE_DATE_EPOCH, "merged-usr-hook+ldconfig+neutral", recipe.packages,
                      recipe.user, recipe.uid, recipe.owned_dirs, recipe.root_dirs, pins)


def build_rootfs(recipe: RootfsRecipe, store: BlobStore, cache: KeyedCache, lock: DebianLock,
                 *, update_lock: bool, log: Callable[[str], None]) -> dict:
    """Return {digest, size, packages} of the root filesystem layer, building it if needed."""
    pins = None if update_lock else lock.pins(recipe)
    key = _cache_key(recipe, pins)
    if pins is not None and (hit := cache.get(key)) and store.has(hit["digest"]):
        return hit
    if shutil.which("mmdebstrap") is None:
        raise FxError("mmdebstrap is not installed", where="rootfs " + recipe.lock_key,
                      hint="apt-get install mmdebstrap (the portable builder needs it)")
    include = [f"{p}={v}" for p, v in sorted(pins.items())] if pins else list(recipe.packages)
    log(f"rootfs [{recipe.lock_key}]: mmdebstrap ({len(include)} packages)")
    with tempfile.TemporaryDirectory(prefix="fx-rootfs-", dir=store.root) as tmp:
        tmpdir = Path(tmp)
        versions_file, raw_tar = tmpdir / "versions.tsv", tmpdir / "rootfs.tar"
        cmd = ["mmdebstrap", "--variant=essential", "--mode=root", "--format=tar",
               f"--hook-dir={MERGED_USR_HOOKS}", "--include=" + ",".join(include)]
        if shutil.which("eatmydata") and EATMYDATA_HOOKS.is_dir():
            cmd.append(f"--hook-dir={EATMYDATA_HOOKS}")
        cmd += [f"--customize-hook={h}" for h in _hooks(recipe, versions_file)]
        cmd += [f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES]
        cmd += [f"--dpkgopt=path-include={p}" for p in DPKG_INCLUDES]
        cmd += [SUITE, str(raw_tar), str(_sources())]
        env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
            missing = any(w in proc.stderr for w in ("Unable to locate", "not found", "has no installation candidate"))
            hint = ("the Debian mirror may no longer carry a pinned version: rebuild with "
                    "`fxstack build --update-debian-lock` and commit images/debian.lock"
                    if pins and missing else "check the package names in packages.debian"
                    if missing else "see mmdebstrap's error above")
            raise FxError(f"mmdebstrap failed:\n{tail}", where="rootfs " + recipe.lock_key, hint=hint)
        versions = dict(line.split("\t", 1) for line in versions_file.read_text().splitlines() if line)
        if pins is not None and versions != pins:
            diff = sorted(set(versions.items()) ^ set(pins.items()))[:10]
            raise FxError(f"installed packages differ from images/debian.lock: {diff}",
                          where="rootfs " + recipe.lock_key,
                          hint="rebuild with `fxstack build --update-debian-lock` and commit the lock")
        with open(raw_tar, "rb") as src, store.writer() as w:
            normalize_tar(src, w, drop=_drop)
    record = {"digest": w.digest, "size": w.size, "packages": versions}
    if pins is None:
        lock.record(recipe, versions)
        key = _cache_key(recipe, versions)
    cache.put(key, record)
    return record
