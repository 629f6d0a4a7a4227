"""Where things live: the repository root and the per-user state directory."""

from __future__ import annotations

import os
from pathlib import Path


def repo_root() -> Path:
    """The checkout this package runs from, or FXSTACK_ROOT when set (tests build from copies)."""
    env = os.environ.get("FXSTACK_ROOT")
    if env:
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "images").is_dir() and (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def state_dir() -> Path:
    """Build outputs and caches: FXSTACK_STATE, else .fxstack/ in the repository."""
    env = os.environ.get("FXSTACK_STATE")
    return Path(env).resolve() if env else repo_root() / ".fxstack"
