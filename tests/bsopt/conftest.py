"""bsopt tests. Unit tests need the bsopt groups' packages on the host (`./fx check` installs
requirements/tests.txt, which includes them); a module whose imports are missing is skipped with
the package named, as in tests/services."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
if importlib.util.find_spec("bsopt") is None:
    sys.path.insert(0, str(SRC))

NEEDS = {
    "test_bsm.py": ("numpy", "scipy"),
    "test_api.py": ("numpy", "scipy", "fastapi", "httpx", "graphene", "celery", "psycopg2", "redis"),
    "test_neural.py": ("numpy", "scipy", "sklearn", "fastapi", "httpx"),
    "test_scraper_host.py": ("playwright", "psycopg2", "redis", "celery", "uvicorn"),
    "test_scrape_requests.py": ("playwright", "psycopg2", "redis", "celery"),
}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not str(item.path).startswith(str(Path(__file__).parent)):
            continue
        missing = [m for m in NEEDS.get(item.path.name, ()) if importlib.util.find_spec(m) is None]
        if missing:
            item.add_marker(pytest.mark.skip(reason=f"not importable here: {', '.join(missing)} "
                                                    "(./fx check installs requirements/tests.txt)"))
