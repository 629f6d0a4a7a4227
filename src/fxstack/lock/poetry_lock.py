"""Walk poetry.lock from a set of Poetry groups to the exact wheels an image installs.

Markers are evaluated for the image's interpreter (target.py), not for the host, and
extras are followed only where a dependency asks for them.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.markers import InvalidMarker, Marker
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (InvalidWheelFilename, canonicalize_name,
                             parse_wheel_filename)
from packaging.version import Version

from ..errors import FxError
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


def _specifier(text: str) -> SpecifierSet | None:
    """Poetry writes PEP 440 ranges in locks; '*' and caret/tilde forms mean 'any' to us."""
    text = text.strip()
    if text in ("", "*") or text[0] in "^~" and not text.startswith("~="):
        return None
    if re.fullmatch(r"[0-9][0-9A-Za-z.+!-]*", text):
        text = "==" + text
    try:
        return SpecifierSet(text)
    except InvalidSpecifier:
        return None


_EXTRA_ITEM = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


class PoetryLock:
    """A parsed poetry.lock plus the pyproject.toml groups that name its roots."""

    def __init__(self, lock_path: Path, pyproject_path: Path):
        self.lock_path = lock_path
        self.pyproject_path = pyproject_path
        try:
            lock = tomllib.loads(lock_path.read_text())
        except FileNotFoundError as exc:
            raise FxError("lock file is missing", where=str(lock_path),
                          hint="run `python tools/poetry_lock.py` with Poetry 1.8") from exc
        except tomllib.TOMLDecodeError as exc:
            raise FxError(f"not valid TOML: {exc}", where=str(lock_path)) from exc
        pyproject = tomllib.loads(pyproject_path.read_text())
        self.content_hash = lock.get("metadata", {}).get("content-hash", "")
        self.packages: dict[str, list[_Package]] = {}
        for entry in lock.get("package", []):
            pkg = _Package(
                name=canonicalize_name(entry["name"]), version=entry["version"],
                files=[(f["file"], f["hash"]) for f in entry.get("files", [])],
                dependencies=entry.get("dependencies", {}), extras=entry.get("extras", {}),
                python_versions=entry.get("python-versions", "*"),
            )
            self.packages.setdefault(pkg.name, []).append(pkg)
        poetry = pyproject.get("tool", {}).get("poetry", {})
        self.groups: dict[str, dict[str, Any]] = {
            name: group.get("dependencies", {}) for name, group in poetry.get("group", {}).items()
        }
        self.groups["main"] = {k: v for k, v in poetry.get("dependencies", {}).items() if k != "python"}
        self.excluded = self._read_excluded(pyproject)

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
                                  where=where, hint=f"remove it from the group or from the exclusions")
        return excluded

    # -- graph walk ---------------------------------------------------------------

    def _pick(self, name: str, constraint: str, where: str) -> _Package:
        candidates = self.packages.get(name)
        if not candidates:
            raise FxError(f"`{name}` is required but not in the lock", where=where,
                          hint="the lock is stale: regenerate poetry.lock (tools/poetry_lock.py)")
        if len(candidates) == 1:
            return candidates[0]
        spec = _specifier(constraint)
        fitting = [p for p in candidates if spec is None or Version(p.version) in spec]
        fitting = [p for p in fitting if _python_ok(p.python_versions)] or fitting
        if len(fitting) != 1:
            versions = ", ".join(p.version for p in candidates)
            raise FxError(f"cannot choose between locked versions of `{name}` ({versions})"
                          f" for constraint {constraint!r}", where=where)
        return fitting[0]

    def resolve(self, groups: list[str] | tuple[str, ...]) -> list[_Package]:
        """Every locked package the groups need on the target, roots and transitive."""
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
                    if _marker_true(c.get("markers"), "", where):
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
        return sorted(chosen.values(), key=lambda p: p.name)

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


def _python_ok(python_versions: str) -> bool:
    spec = _specifier(python_versions.replace(" || ", ","))
    return True if spec is None else MARKER_ENV["python_full_version"] in spec


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
