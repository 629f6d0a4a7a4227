"""nix/lock-pins.json: what the portable builder installs, for the Nix path to install too.

poetry2nix decides on its own which file of a locked package to install (pyproject.nix's
`selectWheels` keeps lock order among compatible wheels instead of ranking platform tags as
pip does) and which dependencies to follow (every extra of every package). The flake reads
this file instead: per package the one file `PoetryLock.best_file` picks, and per Poetry
group list (one poetry2nix environment) the packages the lock walk installs and, for each,
the dependencies it followed. Both paths then install the same (name, version, file) set.
Files are pinned for what images install; the harness's own environments (main, main+dev)
get the followed dependencies only.

    python -m fxstack.lock.nixpins            # rewrite nix/lock-pins.json
    python -m fxstack.lock.nixpins --check    # exit 1 when it is out of date

The file records the lock's content-hash; the flake refuses a pins file made for another
lock (nix/pins.nix), and a unit test keeps it current.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..specs import load_specs
from .poetry_lock import PoetryLock

PINS = Path("nix") / "lock-pins.json"
# The flake's two non-image environments (nix/outputs.nix: harnessEnv, testEnv).
HARNESS_GROUPS = (("main",), ("main", "dev"))


def group_lists(root: Path) -> list[tuple[str, ...]]:
    """Every Poetry group list the flake makes an environment for: each Python image's and
    those of its base chain (nix/images.nix `groupChain`), and the harness's."""
    specs = load_specs(root)
    lists: set[tuple[str, ...]] = set(HARNESS_GROUPS)
    for spec in specs.values():
        s = spec
        while s is not None and s.kind == "python":
            lists.add(tuple(s.groups))
            s = specs[s.base] if s.base else None
    return sorted(lists)


def pins(root: Path) -> dict[str, Any]:
    lock = PoetryLock(root / "poetry.lock", root / "pyproject.toml")
    envs: dict[str, dict[str, list[str]]] = {}
    files: dict[str, dict[str, str]] = {}
    for groups in group_lists(root):
        walk = lock.followed(groups)
        envs["+".join(groups)] = {name: deps for name, (_, deps) in walk.items()}
        if groups in HARNESS_GROUPS:
            continue  # not an image: the portable builder never chooses its files
        for name, (pkg, _) in walk.items():
            f = lock.best_file(pkg)
            files[name] = {"version": f.version, "file": f.filename, "sha256": f.sha256}
    # Dependencies that are the same in every environment are written once; a package whose
    # followed dependencies depend on the environment (an extra asked for by one role only)
    # keeps them per environment.
    per_name: dict[str, set[tuple[str, ...]]] = {}
    for env in envs.values():
        for name, deps in env.items():
            per_name.setdefault(name, set()).add(tuple(deps))
    deps = {n: list(next(iter(v))) for n, v in sorted(per_name.items()) if len(v) == 1}
    return {
        "generated-by": "python -m fxstack.lock.nixpins (from poetry.lock, pyproject.toml, images/); do not edit",
        "content-hash": lock.content_hash,
        "files": dict(sorted(files.items())),
        "deps": deps,
        "envs": {key: {"packages": sorted(env),
                       "deps": {n: d for n, d in sorted(env.items()) if n not in deps}}
                 for key, env in sorted(envs.items())},
    }


def render(root: Path) -> str:
    return json.dumps(pins(root), indent=1, sort_keys=False) + "\n"


def write(root: Path) -> Path:
    target = root / PINS
    fd, tmp = tempfile.mkstemp(prefix=".lock-pins-", dir=target.parent)
    with os.fdopen(fd, "w") as f:
        f.write(render(root))
    os.chmod(tmp, 0o644)
    os.replace(tmp, target)
    return target


def main(argv: list[str]) -> int:
    root = Path.cwd()
    if argv == ["--check"]:
        current = (root / PINS).read_text() if (root / PINS).exists() else ""
        if current != render(root):
            print(f"{PINS} is out of date: run `python -m fxstack.lock.nixpins`", file=sys.stderr)
            return 1
        return 0
    if argv:
        print(__doc__, file=sys.stderr)
        return 2
    print(f"wrote {write(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
