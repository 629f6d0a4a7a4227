"""Root filesystems from Debian 12 packages with mmdebstrap, installed exactly from the lock.

Every package of a root filesystem, the essential ones included, is pinned in
`images/debian.lock` by version, architecture and sha256 (debian_lock.py). A build fetches
the locked files it does not have into a cache kept by sha256 (deb_cache.py) and installs
from a local repository holding exactly those files, so it installs the locked set whatever
the mirror has published since, and keeps doing so after the mirror has dropped a version.

When a locked file is neither cached nor served any more, the package set is resolved
again against the mirror: the build prints what changed and rewrites the lock (or, frozen,
stops with the same table). A lock-updating build is a resolve followed by the very same
locked install, so it makes the same bytes as a later build from the lock it wrote.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import FxError
from .apt_mirror import AptMirror, Offer, configured_sources, newer
from .deb_cache import REPO_SUITE, DebCache
from .debian_lock import Change, DebianLock, LockedDeb, LockEntry, changes, drift_table, utc_stamp
from .runtime import NONE, RuntimePolicy
from .settings import BUILDER_VERSION, SOURCE_DATE_EPOCH
from .store import BlobStore, KeyedCache, inputs_key
from .tarball import normalize_tar

# Docs, man pages and translations are dead weight in a container.
DPKG_EXCLUDES = ["/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*",
                 "/usr/share/info/*", "/usr/share/lintian/*"]
DPKG_INCLUDES = ["/usr/share/doc/*/copyright"]
# init-system-helpers needs `usrmerge | usr-is-merged`; left to itself apt picks usrmerge,
# which drags in a full Perl (~50 MB per root filesystem). mmdebstrap's merged-usr hook lays
# out the /usr symlinks the way debootstrap does and installs the empty usr-is-merged instead.
MERGED_USR_HOOKS = Path("/usr/share/mmdebstrap/hooks/merged-usr")
# dpkg without fsync inside the throw-away build root. Not the eatmydata hook: it installs
# eatmydata from the mirror, which the locked repository does not (and should not) carry.
UNSAFE_IO = "--dpkgopt=force-unsafe-io"
# What an image's apt is pointed at: the public Debian 12 archive, not the build's local
# repository (whose temporary path would differ on every build).
IMAGE_SOURCES = ("deb http://deb.debian.org/debian bookworm main\\n"
                 "deb http://deb.debian.org/debian bookworm-updates main\\n"
                 "deb http://deb.debian.org/debian-security bookworm-security main\\n")
# Bump when the way a root filesystem is made changes (cache keys only).
ROOTFS_VERSION = "locked-repo-2-runtime"
# Where `python -m fxstack.image.runtime` imports from, for the customize hook.
SRC_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class RootfsRecipe:
    """What makes a root filesystem: its packages, plus the user and directories we add."""

    packages: tuple[str, ...]
    user: str = "root"
    uid: int | None = None
    owned_dirs: tuple[str, ...] = ()     # created and owned by `user`
    root_dirs: tuple[str, ...] = ()      # created, owned by root
    # what goes after the install: the package tools and what nothing runs (runtime.py)
    runtime: RuntimePolicy = NONE

    @property
    def lock_key(self) -> str:
        return " ".join(sorted(self.packages))


def _drop(name: str) -> bool:
    """Members of mmdebstrap's tar that must not be in a layer."""
    return (name.startswith("dev/") or name.startswith("var/log/") or name.endswith("-old")
            or name.startswith("var/cache/apt/") or name.startswith("var/lib/apt/lists/")
            or name.startswith("proc/") or name.startswith("sys/"))


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
    ' && rm -rf "$1/etc/apt/sources.list.d" && mkdir "$1/etc/apt/sources.list.d"'
    f' && printf "{IMAGE_SOURCES}" > "$1/etc/apt/sources.list"'
)


def _hooks(recipe: RootfsRecipe, versions_out: Path, policy_file: Path | None = None) -> list[str]:
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
    if policy_file is not None:
        hooks.append(f"PYTHONPATH={q(str(SRC_ROOT))} {q(sys.executable)} -m fxstack.image.runtime"
                     f' "$1" {q(str(policy_file))}')
    # Rebuild the linker cache last, so nothing present only during the build stays in it.
    hooks.append('chroot "$1" /sbin/ldconfig')
    hooks.append(_versions_hook(versions_out))
    return hooks


def _versions_hook(out: Path) -> str:
    return ("dpkg-query --admindir=\"$1/var/lib/dpkg\" -W -f='${Package}\\t${Version}\\t${Architecture}\\n'"
            f" > {shlex.quote(str(out))}")


def _read_versions(path: Path) -> dict[str, tuple[str, str]]:
    rows = (line.split("\t") for line in path.read_text().splitlines() if line)
    return {name: (version, arch) for name, version, arch in rows}


def _mmdebstrap(args: list[str], where: str, hint: str) -> None:
    if shutil.which("mmdebstrap") is None:
        raise FxError("mmdebstrap is not installed", where=where,
                      hint="apt-get install mmdebstrap (the portable builder needs it)")
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(SOURCE_DATE_EPOCH)}
    proc = subprocess.run(["mmdebstrap", "--variant=essential", "--mode=root",
                           f"--hook-dir={MERGED_USR_HOOKS}", UNSAFE_IO, *args],
                          env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join(line for line in proc.stderr.strip().splitlines()[-15:])
        raise FxError(f"mmdebstrap failed:\n{tail}", where=where, hint=hint)


def _cache_key(recipe: RootfsRecipe, entry: LockEntry) -> str:
    return inputs_key("rootfs", BUILDER_VERSION, SOURCE_DATE_EPOCH, ROOTFS_VERSION, recipe.packages,
                      recipe.user, recipe.uid, recipe.owned_dirs, recipe.root_dirs,
                      recipe.runtime.as_json() if recipe.runtime != NONE else None,
                      [(d.name, d.version, d.arch, d.sha256) for d in entry.debs()])


def _not_served(offers: dict[str, list[Offer]], debs: list[LockedDeb]) -> list[LockedDeb]:
    return [d for d in debs if d.version not in {o.version for o in offers.get(d.name, [])}]


class DriftError(FxError):
    """The locked set cannot be installed as it is (a file is gone, or it does not install)."""


@dataclass
class RootfsBuilder:
    """Builds root filesystem layers from the lock; one per Builder, shared by its images."""

    store: BlobStore
    layers: KeyedCache
    lock: DebianLock
    cache_root: Path
    frozen: bool = False
    update_lock: bool = False
    log: Callable[[str], None] = print
    apt_root: Path | None = None   # where apt keeps the mirror's index (default: cache_root)
    debs: DebCache = field(init=False)
    built: list[str] = field(default_factory=list, init=False)
    _mirrors: dict[str, AptMirror] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.debs = DebCache(self.cache_root / "debs")

    def mirror(self, snapshot: str = "") -> AptMirror:
        text, suffix = configured_sources(snapshot)
        if text not in self._mirrors:
            self._mirrors[text] = AptMirror(self.apt_root or self.cache_root, text, suffix, self.log)
        return self._mirrors[text]

    def _where(self, recipe: RootfsRecipe) -> str:
        return f"{self.lock.path}: rootfs [{recipe.lock_key}]"

    # -- the one entry point --------------------------------------------------------

    def build(self, recipe: RootfsRecipe) -> dict:
        """{digest, size, packages} of the root filesystem layer, from the lock."""
        key = recipe.lock_key
        entry = self.lock.entry(key)
        if entry is None or (self.update_lock and key not in self.built):
            if entry is None and self.frozen:
                raise FxError("no entry for this package set, and --frozen forbids resolving one",
                              where=self._where(recipe),
                              hint="build once without --frozen (or FXSTACK_FROZEN=1) and commit images/debian.lock")
            entry = self._resolve(recipe, entry, "resolving" if entry is None else "re-resolving (--update-debian-lock)")
        self.built.append(key)
        try:
            entry = self._ensure_files(recipe, entry)
            return self._layer(recipe, entry)
        except DriftError as exc:
            if self.frozen:
                raise
            self.log(f"debian: {exc.message}")
            entry = self._resolve(recipe, entry, "re-resolving")
            return self._layer(recipe, self._ensure_files(recipe, entry))

    # -- the files ------------------------------------------------------------------

    def _ensure_files(self, recipe: RootfsRecipe, entry: LockEntry) -> LockEntry:
        """Every locked file in the cache, fetched from the mirror where missing."""
        missing = [d for d in entry.debs() if not self.debs.has(d)]
        if not missing:
            return entry
        mirror = self.mirror(entry.resolved)
        mirror.refresh()
        offers = mirror.offers([d.name for d in missing])
        gone = _not_served(offers, missing)
        if gone and mirror.refresh(max_age=0):
            offers = mirror.offers([d.name for d in missing])
            gone = _not_served(offers, missing)
        if gone:
            rows = [Change(d.name, d.version, offers[d.name][0].version if offers.get(d.name) else None,
                           offers[d.name][0].suite if offers.get(d.name) else "") for d in gone]
            raise DriftError(
                f"the mirror no longer serves {len(gone)} locked package(s) and the .deb cache lacks them:\n"
                + drift_table(rows), where=self._where(recipe),
                hint="build without --frozen to re-resolve and rewrite the lock, or set FXSTACK_DEBIAN_MIRROR to a "
                     f"snapshot mirror (entry resolved {entry.resolved or 'before resolve times were kept'})")
        self.log(f"debian: fetching {len(missing)} locked .deb files")
        with tempfile.TemporaryDirectory(prefix="fx-debs-", dir=self.cache_root) as tmp:
            files = mirror.download([(d.name, d.version) for d in missing], Path(tmp))
            return self._take(recipe, entry, files)

    def _take(self, recipe: RootfsRecipe, entry: LockEntry, files: list[Path]) -> LockEntry:
        """Cache fetched files, holding each to the lock's sha256 (or recording it, for a format-1 pin)."""
        packages = dict(entry.packages)
        learnt = 0
        for file in files:
            digest, name, version, arch = self.debs.add(file)
            locked = packages.get(name)
            if locked is None or locked.version != version:
                continue
            if locked.verified and (locked.sha256, locked.arch) != (digest, arch):
                raise FxError(f"{name} {version}: the mirror served sha256 {digest}, the lock pins {locked.sha256}",
                              where=self._where(recipe),
                              hint="the file changed under the same version: find out why before trusting it; "
                                   "`--update-debian-lock` re-resolves")
            if not locked.verified:
                packages[name] = LockedDeb(name, version, arch, digest)
                learnt += 1
        # A format-1 pin verified today is served by a snapshot of today.
        entry = LockEntry(packages, entry.resolved or (utc_stamp() if learnt else ""))
        absent = [d.name for d in entry.debs() if not self.debs.has(d)]
        if absent:
            raise FxError(f"apt did not deliver {', '.join(absent)}", where=self._where(recipe))
        if learnt:
            self.lock.record(recipe.lock_key, entry)
            self.log(f"debian: recorded the sha256 of {learnt} packages in {self.lock.path}")
        return entry

    # -- resolving --------------------------------------------------------------------

    def _resolve(self, recipe: RootfsRecipe, old: LockEntry | None, why: str) -> LockEntry:
        """Let mmdebstrap pick the package set from the mirror as it is now, keep its files,
        and write the lock entry; the image itself is then installed from the lock."""
        snapshot = os.environ.get("FXSTACK_DEBIAN_SNAPSHOT") or utc_stamp()
        mirror = self.mirror(snapshot)
        self.log(f"debian: {why} [{recipe.lock_key}] against {mirror.sources_file}")
        # One index per mirror and process: brought up to date here (apt fetches only what
        # changed since the last build) and handed to mmdebstrap, which skips its own update.
        mirror.refresh(max_age=0)
        with tempfile.TemporaryDirectory(prefix="fx-resolve-", dir=self.cache_root) as tmp:
            debs_dir, versions_file, lists = Path(tmp) / "debs", Path(tmp) / "versions.tsv", Path(tmp) / "lists"
            debs_dir.mkdir()
            mirror.copy_lists(lists)
            _mmdebstrap(["--format=null", "--skip=download/empty", "--skip=essential/unlink", "--skip=update",
                         f'--setup-hook=cp -a {shlex.quote(str(lists))}/. "$1/var/lib/apt/lists/"',
                         "--include=" + ",".join(sorted(recipe.packages)),
                         f"--customize-hook=sync-out /var/cache/apt/archives {debs_dir}",
                         "--customize-hook=" + _versions_hook(versions_file),
                         REPO_SUITE, "/dev/null", str(mirror.sources_file)],
                        self._where(recipe), "check the package names in packages.debian and the mirror")
            installed = _read_versions(versions_file)
            fetched = {}
            for file in debs_dir.glob("*.deb"):
                digest, name, version, arch = self.debs.add(file)
                fetched[(name, version, arch)] = digest
        lost = [n for n, (v, a) in installed.items() if (n, v, a) not in fetched]
        if lost:
            raise FxError(f"mmdebstrap installed {', '.join(lost)} but kept no file of it", where=self._where(recipe))
        entry = LockEntry({n: LockedDeb(n, v, a, fetched[(n, v, a)]) for n, (v, a) in installed.items()}, snapshot)
        if old is not None and old.packages == entry.packages:
            return old  # nothing moved: keep the entry (and its resolve time) as committed
        rows = changes(old, entry, self._suites(mirror, entry)) if old else []
        if rows:
            self.log(f"debian: {len(rows)} package(s) changed in [{recipe.lock_key}]; {self.lock.path} rewritten:\n"
                     + drift_table(rows))
        self.lock.record(recipe.lock_key, entry)
        return entry

    @staticmethod
    def _suites(mirror: AptMirror, entry: LockEntry) -> dict[tuple[str, str], str]:
        if not mirror.refresh(required=False):
            return {}
        return {(n, o.version): o.suite for n, offers in mirror.offers(sorted(entry.packages)).items()
                for o in offers}

    # -- the layer ----------------------------------------------------------------------

    def _layer(self, recipe: RootfsRecipe, entry: LockEntry) -> dict:
        key = _cache_key(recipe, entry)
        if (hit := self.layers.get(key)) and self.store.has(hit["digest"]):
            return hit
        self.log(f"rootfs [{recipe.lock_key}]: mmdebstrap from the lock ({len(entry.packages)} packages)")
        with tempfile.TemporaryDirectory(prefix="fx-rootfs-", dir=self.store.root) as tmp:
            tmpdir = Path(tmp)
            repo, versions_file, raw_tar = tmpdir / "repo", tmpdir / "versions.tsv", tmpdir / "rootfs.tar"
            self.debs.write_repo(entry.debs(), repo)
            sources = tmpdir / "locked.list"
            sources.write_text(f"deb [trusted=yes] copy://{repo} ./\n")
            policy_file = None
            if recipe.runtime != NONE:
                policy_file = tmpdir / "runtime.json"
                policy_file.write_text(recipe.runtime.as_json())
            args = ["--format=tar", "--include=" + ",".join(sorted(recipe.packages))]
            args += [f"--customize-hook={h}" for h in _hooks(recipe, versions_file, policy_file)]
            args += [f"--dpkgopt=path-exclude={p}" for p in DPKG_EXCLUDES]
            args += [f"--dpkgopt=path-include={p}" for p in DPKG_INCLUDES]
            try:
                _mmdebstrap(args + [REPO_SUITE, str(raw_tar), str(sources)], self._where(recipe), "")
            except FxError as exc:
                raise DriftError(f"the locked package set does not install: {exc.message}",
                                 where=self._where(recipe),
                                 hint="build without --frozen to re-resolve it") from None
            installed = {n: v for n, (v, _) in _read_versions(versions_file).items()}
            # the runtime policy purged some: what is left must be the lock less those
            dropped = {n: v for n, v in entry.versions().items()
                       if n not in installed and n in recipe.runtime.drop}
            if {**installed, **dropped} != entry.versions():
                diff = sorted(set({**installed, **dropped}.items()) ^ set(entry.versions().items()))[:10]
                raise DriftError(f"installed packages differ from the lock: {diff}", where=self._where(recipe),
                                 hint="build without --frozen to re-resolve it")
            with open(raw_tar, "rb") as src, self.store.writer() as w:
                normalize_tar(src, w, drop=_drop)
        record = {"digest": w.digest, "size": w.size, "packages": installed, "dropped": sorted(dropped)}
        self.layers.put(key, record)
        return record

    # -- updates --------------------------------------------------------------------------

    def updates(self) -> list[Change]:
        """Locked packages (of the package sets built) that the mirror serves newer versions of."""
        if "{snapshot}" in os.environ.get("FXSTACK_DEBIAN_MIRROR", ""):
            return []  # a snapshot mirror is frozen in time: nothing there is newer
        mirror = self.mirror()
        if not mirror.refresh(required=False):
            return []
        locked: dict[str, str] = {}
        for key in dict.fromkeys(self.built):
            entry = self.lock.entry(key)
            if entry:
                locked.update(entry.versions())
        # The answer follows from the index and the locked versions alone; asking apt-cache
        # took most of a rebuild after a code change, so it is kept until either changes (apt
        # rewrites a list file only when the mirror changed it, not on every hourly refresh).
        lists = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns)
                       for f in (mirror.dir / "lists").iterdir() if f.is_file() and f.name != "lock")
        key = inputs_key("updates", str(mirror.dir), lists, sorted(locked.items()))
        answers = KeyedCache(self.cache_root / "updates")
        if (hit := answers.get(key)) is not None:
            return [Change(**row) for row in hit["rows"]]
        offers = mirror.offers(sorted(locked))
        rows = []
        for name, version in sorted(locked.items()):
            best = offers.get(name, [None])[0]
            if best and best.version != version and newer(best.version, version):
                rows.append(Change(name, version, best.version, best.suite))
        answers.put(key, {"rows": [vars(r) for r in rows]})
        return rows

    def updates_notice(self) -> str | None:
        rows = self.updates()
        if not rows:
            return None
        shown = ", ".join(f"{r.name} {r.now} ({r.suite})" for r in rows[:6])
        more = f" and {len(rows) - 6} more" if len(rows) > 6 else ""
        return (f"debian: the mirror has newer versions of {len(rows)} locked package(s): {shown}{more};"
                " take them with `./fx build --update-debian-lock` and commit images/debian.lock")


