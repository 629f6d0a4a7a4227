"""Run Poetry 1.8's `lock` against an index that serves only the project-level JSON API.

The package index reachable from our build machines answers `pypi/<name>/json` and the
PEP 691 simple API, but not the per-release `pypi/<name>/<version>/json` that Poetry 1.8's
PyPI repository asks for, so a plain `poetry lock` reports every package as "not found".
We synthesise the per-release document from the project document and leave
`requires_dist` empty, which makes Poetry read the dependencies from the PEP 658 metadata
(or the files) instead. The lock Poetry writes is the ordinary one: nothing of this shim
reaches poetry.lock.

Usage: /path/to/poetry-1.8-venv/bin/python tools/poetry_lock.py [poetry lock args...]

After a successful lock it rewrites nix/lock-pins.json (`python -m fxstack.lock.nixpins`), the
Nix path's copy of the portable builder's file choices: a lock without it would make every Nix
image refuse to evaluate, and a unit test fail, until someone remembered to run it.
"""

from __future__ import annotations

import re
import sys

from poetry.console.application import main as poetry_main
from poetry.repositories.pypi_repository import PyPiRepository

_RELEASE = re.compile(r"pypi/(?P<name>[^/]+)/(?P<version>[^/]+)/json")
_original_get = PyPiRepository._get
_projects: dict[str, dict] = {}


def _get(self, endpoint, headers=None):
    found = _RELEASE.fullmatch(endpoint)
    if found is None:
        return _original_get(self, endpoint, headers)
    name, version = found["name"], found["version"]
    project = _projects.get(name)
    if project is None:
        project = _original_get(self, f"pypi/{name}/json")
        if project is None:
            return None
        _projects[name] = project
    files = project["releases"].get(version)
    if files is None:
        # The release key may be spelt differently from Poetry's normalised version.
        from packaging.version import Version

        wanted = Version(version)
        files = next((f for v, f in project["releases"].items() if _same(v, wanted)), None)
        if files is None:
            return None
    info = dict(project["info"])
    info.update(version=version, requires_dist=None, requires_python=_requires_python(files),
                yanked=all(f.get("yanked") for f in files) if files else False)
    return {"info": info, "urls": files}


def _same(text, wanted):
    from packaging.version import InvalidVersion, Version

    try:
        return Version(text) == wanted
    except InvalidVersion:
        return False


def _requires_python(files):
    for entry in files:
        if entry.get("requires_python"):
            return entry["requires_python"]
    return None


PyPiRepository._get = _get



def _refresh_nix_pins() -> int:
    """Write nix/lock-pins.json from the new lock (fxstack's own code, imported from src/)."""
    from pathlib import Path

    src = Path(__file__).resolve().parent.parent / "src"
    sys.path.insert(0, str(src))
    from fxstack.lock import nixpins

    return nixpins.main([]) or 0


if __name__ == "__main__":
    sys.argv = ["poetry", "lock", *sys.argv[1:]]
    code = poetry_main()
    sys.exit(code or _refresh_nix_pins())
