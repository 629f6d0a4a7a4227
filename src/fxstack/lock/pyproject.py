"""pyproject.toml as Poetry 1.8 reads it, and the content-hash that ties a lock to it."""

from __future__ import annotations

import hashlib
import json
import tomllib
from pathlib import Path
from typing import Any

from ..errors import FxError

# Poetry's own verdict on a lock whose content-hash does not match (Locker.is_fresh), with
# the command that re-locks in this project.
STALE = "poetry.lock is not consistent with pyproject.toml; re-lock with tools/poetry_lock.py"

# The [tool.poetry] keys whose content the hash covers, in Poetry 1.8's order. The first four
# are always written (null when absent); `group` only when present, so locks written before
# groups existed stay fresh. Anything else (name, version, scripts, packages) may change freely.
_ALWAYS = ("dependencies", "source", "extras", "dev-dependencies")
_IF_PRESENT = ("group",)


def content_hash(poetry: dict[str, Any]) -> str:
    """Poetry 1.8's `metadata.content-hash` for a parsed [tool.poetry] table.

    sha256 of the JSON of the relevant tables with sorted keys and json.dumps' default
    separators and ASCII escaping: the exact bytes Poetry hashes, so a lock Poetry wrote for
    this pyproject compares equal and any change to a dependency or group does not."""
    relevant = {key: poetry.get(key) for key in _ALWAYS}
    relevant.update({key: poetry[key] for key in _IF_PRESENT if poetry.get(key) is not None})
    return hashlib.sha256(json.dumps(relevant, sort_keys=True).encode()).hexdigest()


def read_toml(path: Path, missing: str, hint: str | None = None) -> dict[str, Any]:
    """A TOML file, or an FxError naming it (never a traceback)."""
    try:
        return tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise FxError(missing, where=str(path), hint=hint) from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise FxError(f"cannot read: {exc}", where=str(path)) from exc
    except tomllib.TOMLDecodeError as exc:
        raise FxError(f"not valid TOML: {exc}", where=str(path)) from exc
