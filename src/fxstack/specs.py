"""Image specs: `images/<name>.toml`, the single source of truth for what an image is.

Nix reads the same files with `builtins.fromTOML` (nix/specs.nix) and must arrive at the
same resolved values as `resolve_all` here; a test compares the two as JSON.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import FxError

KINDS = ("python", "service")
UNIVERSES = ("debian", "nixpkgs")

# field -> (type checker description, required)
_STR, _BOOL, _INT = "a string", "true or false", "an integer"
_STRLIST, _INTLIST, _STRMAP = "a list of strings", "a list of integers", "a table of strings"
_APPLIST, _PKGS = "a list of { src, dest } tables", "a table with `debian` and/or `nixpkgs` lists"
_TRIM = "a table { profile = \"<file>\", drop = [{ files = [...], reason = \"...\", unless_imported = true|false }] }"

FIELDS: dict[str, str] = {
    "name": _STR, "description": _STR, "kind": _STR, "deploy": _BOOL, "gpu": _BOOL,
    "portable": _BOOL, "portable_reason": _STR, "base": _STR, "groups": _STRLIST,
    "app": _APPLIST, "user": _STR, "uid": _INT, "workdir": _STR, "entrypoint": _STRLIST,
    "cmd": _STRLIST, "ports": _INTLIST, "volumes": _STRLIST, "env": _STRMAP,
    "labels": _STRMAP, "packages": _PKGS, "trim": _TRIM,
}
REQUIRED = ("name", "description", "kind")
# Fields a Python image may inherit from its `base` image.
INHERITED = ("user", "uid", "workdir", "entrypoint", "cmd")


@dataclass(frozen=True)
class AppEntry:
    src: str
    dest: str


@dataclass(frozen=True)
class ImageSpec:
    """A resolved spec: defaults filled in and `base` merged, as both build paths use it."""

    name: str
    description: str
    kind: str
    path: Path
    deploy: bool = True
    gpu: bool = False
    portable: bool = True
    portable_reason: str = ""
    base: str | None = None
    groups: tuple[str, ...] = ()
    app: tuple[AppEntry, ...] = ()
    user: str = "root"
    uid: int | None = None
    workdir: str = "/"
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
    volumes: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    packages: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Files of the installed Python packages this image never reads (fxstack.image.trim);
    # None: every file as installed. Not inherited from `base`.
    trim: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        """The comparison form shared with nix/specs.nix: plain lists and maps, no paths."""
        return {
            "name": self.name, "description": self.description, "kind": self.kind,
            "deploy": self.deploy, "gpu": self.gpu, "portable": self.portable,
            "portable_reason": self.portable_reason, "base": self.base,
            "groups": list(self.groups),
            "app": [{"src": a.src, "dest": a.dest} for a in self.app],
            "user": self.user, "uid": self.uid, "workdir": self.workdir,
            "entrypoint": list(self.entrypoint), "cmd": list(self.cmd),
            "ports": list(self.ports), "volumes": list(self.volumes),
            "env": dict(sorted(self.env.items())), "labels": dict(sorted(self.labels.items())),
            "packages": {u: list(self.packages.get(u, ())) for u in UNIVERSES},
            "trim": self.trim,
        }


def _check_type(where: str, key: str, value: Any) -> None:
    kind = FIELDS[key]
    ok = {
        _STR: lambda v: isinstance(v, str),
        _BOOL: lambda v: isinstance(v, bool),
        _INT: lambda v: isinstance(v, int) and not isinstance(v, bool),
        _STRLIST: lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        _INTLIST: lambda v: isinstance(v, list)
        and all(isinstance(x, int) and not isinstance(x, bool) for x in v),
        _STRMAP: lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
        _APPLIST: lambda v: isinstance(v, list)
        and all(isinstance(x, dict) and set(x) == {"src", "dest"}
                and all(isinstance(y, str) for y in x.values()) for x in v),
        _PKGS: lambda v: isinstance(v, dict) and set(v) <= set(UNIVERSES)
        and all(isinstance(x, list) and all(isinstance(y, str) for y in x) for x in v.values()),
        _TRIM: lambda v: isinstance(v, dict) and set(v) <= {"profile", "drop"}
        and isinstance(v.get("profile", ""), str) and isinstance(v.get("drop", []), list)
        and all(isinstance(d, dict) and set(d) <= {"files", "reason", "unless_imported"}
                and isinstance(d.get("files"), list) and d["files"]
                and all(isinstance(f, str) and f for f in d["files"])
                and isinstance(d.get("reason"), str) and d["reason"].strip()
                and isinstance(d.get("unless_imported", False), bool) for d in v.get("drop", [])),
    }[kind]
    if not ok(value):
        raise FxError(f"field `{key}` must be {kind}, got {value!r}", where=where,
                      hint=f"fix `{key}` in this file")


def _parse(path: Path) -> dict[str, Any]:
    try:
        raw = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise FxError(f"not valid TOML: {exc}", where=str(path)) from exc
    for key, value in raw.items():
        if key not in FIELDS:
            import difflib

            close = difflib.get_close_matches(key, FIELDS, n=1)
            guess = f" (did you mean `{close[0]}`?)" if close else ""
            raise FxError(f"unknown field `{key}`{guess}", where=f"{path}: {key}",
                          hint=f"known fields: {', '.join(sorted(FIELDS))}")
        _check_type(f"{path}: {key}", key, value)
    for key in REQUIRED:
        if key not in raw:
            raise FxError(f"missing required field `{key}`", where=f"{path}: {key}",
                          hint=f"add `{key} = ...` to this file")
    return raw


def _validate_own(path: Path, raw: dict[str, Any], groups: set[str], root: Path) -> None:
    def fail(key: str, message: str, hint: str | None = None):
        raise FxError(message, where=f"{path}: {key}", hint=hint)

    if raw["name"] != path.stem:
        fail("name", f"name `{raw['name']}` differs from the file name `{path.stem}`",
             f"rename the file to {raw['name']}.toml or set name = \"{path.stem}\"")
    if raw["kind"] not in KINDS:
        fail("kind", f"kind `{raw['kind']}` is not one of {', '.join(KINDS)}")
    for port in raw.get("ports", []):
        if not 1 <= port <= 65535:
            fail("ports", f"port {port} is out of range 1..65535")
    if "uid" in raw and not 0 <= raw["uid"] <= 65535:
        fail("uid", f"uid {raw['uid']} is out of range 0..65535")
    for group in raw.get("groups", []):
        if group not in groups:
            fail("groups", f"unknown Poetry group `{group}`",
                 f"groups in pyproject.toml: {', '.join(sorted(groups))}")
    if raw["kind"] == "service" and raw.get("groups"):
        fail("groups", "a service image installs no Poetry groups", "use kind = \"python\"")
    if raw.get("portable", True) is False and not raw.get("portable_reason"):
        fail("portable_reason", "portable = false needs a portable_reason saying what to do")
    if raw.get("portable", True) and raw["kind"] == "service" and not raw.get("packages", {}).get("debian"):
        fail("packages", "a portable service image needs packages.debian",
             "list its Debian packages, or set portable = false with a reason")
    for key in ("workdir",):
        if key in raw and not raw[key].startswith("/"):
            fail(key, f"`{raw[key]}` must be an absolute path")
    for vol in raw.get("volumes", []):
        if not vol.startswith("/"):
            fail("volumes", f"volume `{vol}` must be an absolute path")
    for entry in raw.get("app", []):
        src, dest = entry["src"], entry["dest"]
        if PurePosixPath(src).is_absolute() or ".." in PurePosixPath(src).parts:
            fail("app", f"app src `{src}` must be a path inside the repository")
        if not (root / src).exists():
            fail("app", f"app src `{src}` does not exist", "create it or fix the path")
        if not dest.startswith("/"):
            fail("app", f"app dest `{dest}` must be an absolute path")
    if "trim" in raw:
        trim = raw["trim"]
        if raw["kind"] != "python":
            fail("trim", "only a Python image's packages can be trimmed")
        profile = trim.get("profile", "")
        if profile and not (root / profile).is_file():
            fail("trim", f"import profile `{profile}` does not exist",
                 "`.venv/bin/python tools/import_profile.py` writes it from the running service")
        if any(d.get("unless_imported") for d in trim.get("drop", [])) and not profile:
            fail("trim", "`unless_imported` needs `profile`, the modules the service imports")


def poetry_groups(root: Path) -> set[str]:
    pyproject = root / "pyproject.toml"
    try:
        data = tomllib.loads(pyproject.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FxError(f"cannot read Poetry groups: {exc}", where=str(pyproject)) from exc
    return set(data.get("tool", {}).get("poetry", {}).get("group", {}))


def _resolve(raw: dict[str, Any], base: ImageSpec | None, path: Path) -> ImageSpec:
    def inherit(key: str, default: Any) -> Any:
        if key in raw:
            return raw[key]
        return getattr(base, key) if base is not None and key in INHERITED else default

    groups = list(base.groups) if base else []
    groups += [g for g in raw.get("groups", []) if g not in groups]
    packages = {u: list(base.packages.get(u, ())) if base else [] for u in UNIVERSES}
    for universe, names in raw.get("packages", {}).items():
        packages[universe] += [n for n in names if n not in packages[universe]]
    return ImageSpec(
        name=raw["name"], description=raw["description"], kind=raw["kind"], path=path,
        deploy=raw.get("deploy", True), gpu=raw.get("gpu", False),
        portable=raw.get("portable", True), portable_reason=raw.get("portable_reason", ""),
        base=raw.get("base"), groups=tuple(groups),
        app=tuple(AppEntry(a["src"], a["dest"]) for a in raw.get("app", [])),
        user=inherit("user", "root"), uid=inherit("uid", None), workdir=inherit("workdir", "/"),
        entrypoint=tuple(inherit("entrypoint", [])), cmd=tuple(inherit("cmd", [])),
        ports=tuple(raw.get("ports", [])), volumes=tuple(raw.get("volumes", [])),
        env={**(base.env if base else {}), **raw.get("env", {})},
        labels={**(base.labels if base else {}), **raw.get("labels", {})},
        packages={u: tuple(v) for u, v in packages.items() if v},
        trim=_normal_trim(raw["trim"]) if "trim" in raw else None,
    )


def _normal_trim(trim: dict[str, Any]) -> dict[str, Any]:
    """Defaults filled in, the form nix/specs.nix gives too."""
    return {"profile": trim.get("profile", ""),
            "drop": [{"files": list(d["files"]), "reason": d["reason"],
                      "unless_imported": d.get("unless_imported", False)} for d in trim.get("drop", [])]}


def load_specs(root: Path, images_dir: Path | None = None) -> dict[str, ImageSpec]:
    """Read, validate and resolve every spec; the first problem stops with an FxError."""
    images_dir = images_dir or root / "images"
    files = sorted(images_dir.glob("*.toml"))
    if not files:
        raise FxError("no image specs found", where=str(images_dir),
                      hint="each image needs images/<name>.toml")
    groups = poetry_groups(root)
    raws: dict[str, tuple[Path, dict[str, Any]]] = {}
    for path in files:
        raw = _parse(path)
        if raw["name"] in raws:
            other = raws[raw["name"]][0]
            raise FxError(f"image name `{raw['name']}` is also claimed by {other}",
                          where=f"{path}: name", hint="give each image a unique name")
        _validate_own(path, raw, groups, root)
        raws[raw["name"]] = (path, raw)

    resolved: dict[str, ImageSpec] = {}

    def resolve(name: str, chain: tuple[str, ...]) -> ImageSpec:
        if name in resolved:
            return resolved[name]
        path, raw = raws[name]
        base = None
        if "base" in raw:
            where = f"{path}: base"
            if raw["base"] in chain + (name,):
                raise FxError(f"base chain loops: {' -> '.join(chain + (name, raw['base']))}", where=where)
            if raw["base"] not in raws:
                raise FxError(f"base image `{raw['base']}` has no spec", where=where,
                              hint=f"known images: {', '.join(sorted(raws))}")
            base = resolve(raw["base"], chain + (name,))
            if raw["kind"] != "python" or base.kind != "python":
                raise FxError("only a Python image can have a base, and only a Python one", where=where)
        spec = _resolve(raw, base, path)
        if spec.kind == "python":
            if not spec.groups:
                raise FxError("a Python image needs at least one Poetry group", where=f"{path}: groups")
            if not spec.packages.get("debian") and spec.portable:
                raise FxError("a Python image needs packages.debian (the interpreter)",
                              where=f"{path}: packages", hint="set base = \"fx-base\" or list them")
        resolved[name] = spec
        return spec

    for name in raws:
        resolve(name, ())
    return dict(sorted(resolved.items()))


def specs_json(specs: dict[str, ImageSpec]) -> dict[str, Any]:
    return {name: spec.to_json() for name, spec in specs.items()}
