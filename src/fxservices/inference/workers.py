"""Which model version each worker of the API serves, so that /ready can speak for all of them.

gunicorn runs FX_API_WORKERS processes behind one port and a request reaches one of them: a
/ready that looked only at its own worker said "ready" while the other still had no model, and
the next /predict, landing there, got a 503. Each worker writes the version it serves to its own
file (temp file + rename: a reader never sees half of one) in a directory named after the
gunicorn master, so files of an earlier master, or of another process tree, are never read.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional

from fxservices.common.config import env_int

BASE_DIR = Path(os.environ.get("FX_WORKER_STATE_DIR", "/tmp/fx-inference-workers"))


def _dir() -> Path:
    return BASE_DIR / str(os.getppid())


def record(version: Optional[str]) -> None:
    """This worker now serves `version` (None: nothing yet)."""
    d = _dir()
    d.mkdir(parents=True, exist_ok=True)
    tmp = d / f".{os.getpid()}.tmp"
    tmp.write_text(json.dumps({"version": version}))
    os.replace(tmp, d / f"{os.getpid()}.json")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def serving() -> dict[int, Optional[str]]:
    """{pid: version served or None} of every live worker that has started."""
    found: dict[int, Optional[str]] = {}
    for path in _dir().glob("*.json"):
        try:
            pid = int(path.stem)
            version = json.loads(path.read_text())["version"]
        except (ValueError, KeyError, OSError):
            continue
        if _alive(pid):
            found[pid] = version
    return found


def expected() -> int:
    """How many workers the master runs (gunicorn_conf reads the same variable)."""
    return env_int("FX_API_WORKERS", 1, minimum=1)


def lagging(version: str) -> list[str]:
    """What keeps the API from serving `version` in every worker; empty when none."""
    workers = serving()
    behind = [f"worker {pid} serves {'nothing yet' if v is None else 'version ' + v}"
              for pid, v in sorted(workers.items()) if v != version]
    missing = expected() - len(workers)
    if missing > 0:
        behind.append(f"{missing} of {expected()} workers not started yet")
    return behind
