"""Walk poetry.lock from a set of Poetry groups to the exact wheels an image installs.

Markers are evaluated for the image's interpreter (target.py), not for the host, and
extras are followed only where a dependency asks for them. A lock that does not belong to
the pyproject beside it (content-hash, or a root constraint the locked version breaks) is
refused when it is read, so no command can build from it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.utils import (InvalidWheelFilename, canonicalize_name,
                             parse_wheel_filename)
from packaging.version import InvalidVersion, Version

from ..errors import FxError
from .constraints import ConstraintError, PoetryConstraint, parse_constraint
from .pyproject import STALE, content_hash, read_toml
from .target import MARKER_ENV, tag_priority


@dataclass(frozen=True, order=True)
class LockedFile:
    """One distribution file the lock pins: what to fetch and the hash it must have."""

    name: str          # canonical project name
    version: str
    filename: str
    sha256: str

    @property
    def is_wheel(self) -> bool:
        return self.filename.endswith(".whl")


@dataclass
class _Package:
    name: str
    version: str
    files: list[tuple[str, str]]
    dependencies: dict[str, Any]
    extras: dict[str, list[str]]
    python_versions: str


def _as_list(spec: Any) -> list[dict[str, Any]]:
    """A lock dependency is a version string, a table, or a list of tables (per marker)."""
    if isinstance(spec, str):
        return [{"version": spec}]
    if isinstance(spec, dict):
        return [spec]
    return list(spec)


def _marker_true(marker: str | None, extra: str, where: str) -> bool:
    if not marker:
        return True
    try:
        return Marker(marker).evaluate({**MARKER_ENV, "extra": extra})
    except InvalidMarker as exc:
        raise FxError(f"cannot read marker {marker!r}: {exc}", where=where) from exc


def _constraint(text: Any, where: str) -> PoetryConstraint:
    try:
        return parse_constraint("*" if text is None else text)
    except ConstraintError as exc:
        raise FxError(str(exc), where=where) from exc


def _applies(c: dict[str, Any], where: str) -> bool:
    """Does a dependency alternative apply on the target (its `markers`, Poetry's `python`)?"""
    if "python" in c and not _constraint(c["python"], where).allows(MARKER_ENV["python_full_version"]):
        return False
    return _marker_true(c.get("markers"), "", where)


_EXTRA_ITEM = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class PoetryLock:
    """A parsed poetry.lock plus the pyproject.toml groups that name its roots."""

    def __init__(self, lock_path: Path, pyproject_path: Path):
        self.lock_path = lock_path
        self.pyproject_path = pyproject_path
        pyproject = read_toml(pyproject_path, "pyproject.toml is missing")
        lock = read_toml(lock_path, "lock file is missing",
                         hint="run `python tools/poetry_lock.py` with Poetry 1.8")
        poetry = pyproject.get("tool", {}).get("poetry")
        if not isinstance(poetry, dict):
            raise FxError("has no [tool.poetry] table", where=str(pyproject_path))
        self.content_hash = self._check_content_hash(lock, poetry)
        self.packages: dict[str, list[_Package]] = {}
        for number, entry in enumerate(lock.get("package", []), 1):
            pkg = self._read_package(number, entry)
            self.packages.setdefault(pkg.name, []).append(pkg)
        self.groups: dict[str, dict[str, Any]] = {}
        for name, group in _table(poetry.get("group", {}), f"{pyproject_path}: [tool.poetry.group]").items():
            where = f"{pyproject_path}: [tool.poetry.group.{name}]"
            self.groups[name] = _table(_table(group, where).get("dependencies", {}), where)
        self.groups["main"] = {k: v for k, v in _table(
            poetry.get("dependencies", {}), f"{pyproject_path}: [tool.poetry.dependencies]").items()
            if k != "python"}
        self.excluded = self._read_excluded(pyproject)
        self._check_roots()

    # -- consistency with pyproject.toml ----------------------------------------------

    def _check_content_hash(self, lock: dict, poetry: dict) -> str:
        """Poetry 1.8's freshness test: the lock records the hash of pyproject's
        dependency tables it was solved for; any change to them makes it stale."""
        metadata = lock.get("metadata")
        locked = metadata.get("content-hash") if isinstance(metadata, dict) else None
        if not isinstance(locked, str):
            raise FxError("has no [metadata] content-hash", where=str(self.lock_path),
                          hint="poetry.lock is written by Poetry 1.8: re-lock with tools/poetry_lock.py")
        try:
            now = content_hash(poetry)
        except (TypeError, ValueError) as exc:  # a TOML date, say: Poetry could not hash it either
            raise FxError(f"cannot hash [tool.poetry] as Poetry does: {exc}",
                          where=str(self.pyproject_path)) from exc
        if now != locked:
            raise FxError(
                STALE, where=str(self.lock_path),
                hint=f"{self.pyproject_path.name}'s dependencies and groups hash to {now[:12]}…, the lock"
                     f" was made for {locked[:12]}…; `<poetry-1.8-venv>/bin/python tools/poetry_lock.py"
                     f" --no-update` re-locks keeping the other versions")
        return locked

    def _read_package(self, number: int, entry: Any) -> _Package:
        where = str(self.lock_path)
        label = f"[[package]] #{number}"
        if not isinstance(entry, dict):
            raise FxError(f"{label} is not a table", where=where)
        if isinstance(entry.get("name"), str):
            label += f" (`{entry['name']}`)"
        hint = "poetry.lock is written by Poetry: re-lock with tools/poetry_lock.py rather than edit it"
        for field_name, kind in (("name", str), ("version", str), ("python-versions", str), ("files", list)):
            if field_name not in entry:
                raise FxError(f"{label} has no `{field_name}`", where=where, hint=hint)
            if not isinstance(entry[field_name], kind):
                raise FxError(f"{label}: `{field_name}` must be a {'string' if kind is str else 'list'}",
                              where=where, hint=hint)
        try:
            Version(entry["version"])
        except InvalidVersion as exc:
            raise FxError(f"{label}: `version` {entry['version']!r} is not a PEP 440 version",
                          where=where, hint=hint) from exc
        files = []
        for f in entry["files"]:
            if not isinstance(f, dict) or not isinstance(f.get("file"), str) or not isinstance(f.get("hash"), str):
                raise FxError(f"{label}: every `files` entry needs `file` and `hash`: {f!r}",
                              where=where, hint=hint)
            files.append((f["file"], f["hash"]))
        return _Package(
            name=canonicalize_name(entry["name"]), version=entry["version"], files=files,
            dependencies=_table(entry.get("dependencies", {}), f"{where}: {label} dependencies"),
            extras=_table(entry.get("extras", {}), f"{where}: {label} extras"),
            python_versions=entry["python-versions"],
        )

    def _check_roots(self) -> None:
        """Every root dependency of every group has a locked version its constraint allows.

        The content-hash catches an edited pyproject; this also catches a lock whose hash
        was patched by hand (or a lock Poetry never wrote), e.g. `fastapi = "0.999.0"`
        against a lock holding 0.115.12."""
        for group, deps in self.groups.items():
            for dep_name, spec in deps.items():
                where = f"{self.pyproject_path}: group {group}: {dep_name}"
                name = canonicalize_name(dep_name)
                for c in _as_list(spec):
                    if not isinstance(c, dict):
                        raise FxError(f"not a version or a table: {c!r}", where=where)
                    if not _applies(c, where):
                        continue
                    constraint = _constraint(c.get("version"), where)
                    locked = [p.version for p in self.packages.get(name, [])]
                    if not any(self._allows(constraint, v) for v in locked):
                        has = f"the lock has {', '.join(locked)}" if locked else "the lock does not have it"
                        raise FxError(f"{STALE}: group `{group}` asks for `{dep_name}` {constraint.text},"
                                      f" {has}", where=str(self.lock_path),
                                      hint=f"{self.pyproject_path} and the lock were changed separately")

    def _allows(self, constraint: PoetryConstraint, version: str) -> bool:
        try:
            return constraint.allows(version)
        except InvalidVersion as exc:
            raise FxError(f"locked version {version!r} is not a PEP 440 version",
                          where=str(self.lock_path)) from exc

    def _read_excluded(self, pyproject: dict) -> dict[str, str]:
        """[tool.fxstack.exclude]: locked packages no image installs, each with the reason.

        For dependencies that are declared but dead at run time (an extra pulled in for a
        type checker, say). What only they need goes too, unless something else needs it."""
        raw = pyproject.get("tool", {}).get("fxstack", {}).get("exclude", {})
        where = f"{self.pyproject_path}: [tool.fxstack.exclude]"
        if not isinstance(raw, dict):
            raise FxError("must be a table of `package = \"reason\"`", where=where)
        excluded = {}
        for name, reason in raw.items():
            if not isinstance(reason, str) or not reason.strip():
                raise FxError(f"`{name}` needs a reason: `{name} = \"why no image needs it\"`",
                              where=where)
            if canonicalize_name(name) not in self.packages:
                raise FxError(f"`{name}` is not in the lock, so there is nothing to exclude",
                              where=where, hint="check the spelling, or remove the entry")
            excluded[canonicalize_name(name)] = reason
        for group, deps in self.groups.items():
            for dep in deps:
                if canonicalize_name(dep) in excluded:
                    raise FxError(f"`{dep}` is excluded but group `{group}` asks for it directly",
                                  where=where, hint="remove it from the group or from the exclusions")
        return excluded

    # -- graph walk ---------------------------------------------------------------

    def _pick(self, name: str, constraint: str, where: str) -> _Package:
        """The locked version that fits `constraint`; several locked versions of one
        package (per Python or platform) are told apart by constraint, then Python."""
        candidates = self.packages.get(name)
        if not candidates:
            raise FxError(f"`{name}` is required but not in the lock", where=where,
                          hint="the lock is stale: regenerate poetry.lock (tools/poetry_lock.py)")
        spec = _constraint(constraint, where)
        fitting = [p for p in candidates if self._allows(spec, p.version)]
        if not fitting:
            versions = ", ".join(p.version for p in candidates)
            raise FxError(f"{STALE}: `{name}` {constraint} is required, the lock has {versions}",
                          where=where, hint=f"re-lock {self.lock_path.name}")
        if len(fitting) > 1:
            fitting = [p for p in fitting if self._python_ok(p)] or fitting
        if len(fitting) != 1:
            versions = ", ".join(p.version for p in fitting)
            raise FxError(f"cannot choose between locked versions of `{name}` ({versions})"
                          f" for constraint {constraint!r}", where=where)
        return fitting[0]

    def _python_ok(self, pkg: _Package) -> bool:
        where = f"{self.lock_path}: {pkg.name} {pkg.version}: python-versions"
        return _constraint(pkg.python_versions, where).allows(MARKER_ENV["python_full_version"])

    def resolve(self, groups: list[str] | tuple[str, ...]) -> list[_Package]:
        """Every locked package the groups need on the target, roots and transitive."""
        chosen, _ = self._walk(groups)
        return sorted(chosen.values(), key=lambda p: p.name)

    def followed(self, groups: list[str] | tuple[str, ...]) -> dict[str, tuple[_Package, list[str]]]:
        """name -> (package, the dependencies the walk followed from it) for the groups: the
        edges of what `resolve` installs, excluded packages left out. The Nix path builds each
        package with exactly these (nix/lock-pins.json), not with every extra turned on."""
        chosen, extras = self._walk(groups)
        return {name: (pkg, sorted({dep for dep, *_ in self._dependencies(pkg, frozenset(extras[name]))
                                    if dep not in self.excluded}))
                for name, pkg in sorted(chosen.items())}

    def _walk(self, groups: list[str] | tuple[str, ...]) -> tuple[dict[str, _Package], dict[str, set[str]]]:
        chosen: dict[str, _Package] = {}
        extras_seen: dict[str, set[str]] = {}
        queue: list[tuple[str, str, frozenset[str], str]] = []
        for group in groups:
            if group not in self.groups:
                raise FxError(f"unknown Poetry group `{group}`", where=str(self.pyproject_path),
                              hint=f"groups: {', '.join(sorted(self.groups))}")
            for dep_name, spec in self.groups[group].items():
                for c in _as_list(spec):
                    where = f"{self.pyproject_path}: group {group}: {dep_name}"
                    if _applies(c, where):
                        queue.append((canonicalize_name(dep_name), c.get("version", "*"),
                                      frozenset(c.get("extras", [])), where))
        while queue:
            name, constraint, extras, where = queue.pop()
            if name in self.excluded:
                continue
            pkg = chosen.get(name) or self._pick(name, constraint, where)
            known = extras_seen.setdefault(name, set())
            if name in chosen and extras <= known:
                continue
            chosen[name] = pkg
            known |= extras
            queue.extend(self._dependencies(pkg, frozenset(known)))
        return chosen, extras_seen

    def _dependencies(self, pkg: _Package, extras: frozenset[str]):
        where = f"{self.lock_path}: {pkg.name} {pkg.version}"
        in_extra = {
            canonicalize_name(m.group(1))
            for extra in extras for item in pkg.extras.get(extra, [])
            if (m := _EXTRA_ITEM.match(item))
        }
        for dep_name, spec in pkg.dependencies.items():
            dep = canonicalize_name(dep_name)
            for c in _as_list(spec):
                if c.get("optional") and dep not in in_extra:
                    continue
                contexts = sorted(extras) if c.get("optional") else [""] + sorted(extras)
                if any(_marker_true(c.get("markers"), e, where) for e in contexts):
                    yield dep, c.get("version", "*"), frozenset(c.get("extras", [])), where

    # -- files ----------------------------------------------------------------------

    def files_for(self, groups: list[str] | tuple[str, ...]) -> list[LockedFile]:
        """The one file per package to install on the target: its best wheel."""
        return [self.best_file(pkg) for pkg in self.resolve(groups)]

    def best_file(self, pkg: _Package) -> LockedFile:
        priority = tag_priority()
        best: tuple[int, str, str] | None = None
        for filename, digest in pkg.files:
            if not filename.endswith(".whl"):
                continue
            try:
                _, _, _, wheel_tags = parse_wheel_filename(filename)
            except InvalidWheelFilename:
                continue
            ranks = [priority[t] for t in wheel_tags if t in priority]
            if ranks and (best is None or min(ranks) < best[0]):
                best = (min(ranks), filename, digest)
        if best is None:
            # No wheel for the target: fall back to the sdist, which the builder accepts only
            # if it builds into a pure-Python wheel (images never carry compiled host code).
            sdists = [(f, h) for f, h in pkg.files if f.endswith((".tar.gz", ".zip"))]
            if not sdists:
                raise FxError(
                    f"`{pkg.name}` {pkg.version} has no wheel for CPython 3.11 manylinux x86_64"
                    f" and no sdist (files: {', '.join(f for f, _ in pkg.files) or 'none'})",
                    where=f"{self.lock_path}: {pkg.name}",
                    hint="pin a version that ships a manylinux wheel")
            best = (-1, *sdists[0])
        _, filename, digest = best
        algo, _, value = digest.partition(":")
        if algo != "sha256" or not re.fullmatch(r"[0-9a-f]{64}", value):
            raise FxError(f"hash {digest!r} of {filename} is not a sha256",
                          where=f"{self.lock_path}: {pkg.name}")
        return LockedFile(pkg.name, pkg.version, filename, value)


def _table(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise FxError(f"must be a table, not {value!r}", where=where)
    return value


def export_requirements(lock: PoetryLock, groups: list[str], exclude: tuple[str, ...] = ()) -> str:
    """pip requirements with every locked hash of each package, for `--require-hashes`.

    Markers are evaluated for the image target, which is also the host's interpreter
    family (CPython 3.11 on Linux); all files' hashes are kept so pip may pick the one
    that fits the host.
    """
    flags = "".join(f" --exclude {e}" for e in exclude)
    lines = [f"# generated from poetry.lock by `fxstack lock-export {' '.join(groups)}{flags}`; do not edit\n"]
    for pkg in lock.resolve(groups):
        if any(pkg.name == e or pkg.name.startswith(e.rstrip("*")) and e.endswith("*") for e in exclude):
            continue
        hashes = " ".join(f"--hash={h}" for _, h in sorted(pkg.files, key=lambda fh: fh[1]))
        lines.append(f"{pkg.name}=={pkg.version} {hashes}\n")
    return "".join(lines)
