"""The benchmark's "+1 dependency" step re-locks as `poetry lock --no-update` would: the
lock it leaves passes the builder's staleness checks (Poetry's content-hash), keeps every
other pin, and places the new package where Poetry sorts it."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import bench  # noqa: E402

from fxstack.errors import FxError  # noqa: E402
from fxstack.lock.poetry_lock import PoetryLock  # noqa: E402

ENTRY = ('[[package]]\nname = "pyjokes"\nversion = "0.6.0"\ndescription = ""\noptional = false\n'
         'python-versions = "*"\nfiles = [\n    {file = "pyjokes-0.6.0-py2.py3-none-any.whl", '
         'hash = "sha256:' + "ab" * 32 + '"},\n]\n')


@pytest.fixture()
def repo(tmp_path):
    for name in ("pyproject.toml", "poetry.lock"):
        shutil.copy(ROOT / name, tmp_path / name)
    return tmp_path


@pytest.mark.unit
def test_an_added_dependency_without_relock_is_stale(repo):
    bench.add_to_group(repo, "fastapi", "pyjokes", "0.6.0")
    with pytest.raises(FxError, match="not consistent with pyproject.toml"):
        PoetryLock(repo / "poetry.lock", repo / "pyproject.toml")


@pytest.mark.unit
def test_relock_leaves_a_fresh_lock_with_the_new_package(repo):
    before = PoetryLock(repo / "poetry.lock", repo / "pyproject.toml")
    bench.add_to_group(repo, "fastapi", "pyjokes", "0.6.0")
    bench.relock(repo, [ENTRY])
    after = PoetryLock(repo / "poetry.lock", repo / "pyproject.toml")
    assert after.content_hash != before.content_hash
    files = {f.name: f.version for f in after.files_for(["fastapi"])}
    assert files["pyjokes"] == "0.6.0"
    assert {n: [p.version for p in v] for n, v in before.packages.items()} == \
        {n: [p.version for p in v] for n, v in after.packages.items() if n != "pyjokes"}
    text = (repo / "poetry.lock").read_text()
    names = [line[len('name = "'):-1] for line in text.splitlines() if line.startswith('name = "')]
    at = names.index("pyjokes")
    assert names[at - 1].lower() < "pyjokes" < names[at + 1].lower()


@pytest.mark.unit
def test_a_new_group_is_relocked_too(repo):
    bench.add_to_group(repo, "bench-mini", "python-dotenv", "1.0.0")
    bench.relock(repo)
    lock = PoetryLock(repo / "poetry.lock", repo / "pyproject.toml")
    assert [f.name for f in lock.files_for(["bench-mini"])] == ["python-dotenv"]
