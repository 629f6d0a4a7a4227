"""A lock that does not belong to its pyproject is refused: Poetry 1.8's content-hash, Poetry's
constraint syntax against every root, broken lock entries named, never a traceback."""

import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest

from fxstack.errors import FxError
from fxstack.lock.constraints import ConstraintError, parse_constraint
from fxstack.lock.poetry_lock import PoetryLock
from fxstack.lock.pyproject import STALE, content_hash

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit


# -- Poetry's constraint syntax ------------------------------------------------------------------

# Poetry's documentation (dependency-specification): each constraint, versions it allows,
# versions it does not. Boundaries on both sides of every range.
DOCUMENTED = [
    ("^1.2.3", ["1.2.3", "1.9.9"], ["1.2.2", "2.0.0", "2.0.0a1"]),
    ("^1.2", ["1.2.0", "1.99"], ["1.1.9", "2.0.0"]),
    ("^1", ["1.0.0", "1.99.1"], ["0.9", "2.0.0"]),
    ("^0.2.3", ["0.2.3", "0.2.99"], ["0.2.2", "0.3.0"]),
    ("^0.0.3", ["0.0.3"], ["0.0.2", "0.0.4"]),
    ("^0.0", ["0.0.0", "0.0.9"], ["0.1.0"]),
    ("^0", ["0.0.0", "0.99.1"], ["1.0.0"]),
    ("~1.2.3", ["1.2.3", "1.2.99"], ["1.2.2", "1.3.0"]),
    ("~1.2", ["1.2.0", "1.2.99"], ["1.1.9", "1.3.0"]),
    ("~1", ["1.0.0", "1.99"], ["0.9", "2.0.0"]),
    ("~=1.2", ["1.2", "1.99"], ["1.1", "2.0"]),              # PEP 440 compatible release
    ("~=1.2.3", ["1.2.3", "1.2.99"], ["1.2.2", "1.3.0"]),
    ("*", ["0.0.1", "99.0"], []),
    ("1.*", ["1.0.0", "1.99"], ["0.9", "2.0.0"]),
    ("1.2.*", ["1.2.0", "1.2.99"], ["1.1.9", "1.3.0"]),
    ("1.2.x", ["1.2.0", "1.2.99"], ["1.3.0"]),
    (">= 1.2.0", ["1.2.0", "5"], ["1.1.9"]),
    ("> 1", ["1.0.1"], ["1", "1.0.0"]),
    ("< 2", ["1.99"], ["2.0.0", "2.0.0rc1"]),
    ("!= 1.2.3", ["1.2.2", "1.2.4"], ["1.2.3"]),
    (">= 1.2, < 1.5", ["1.2", "1.4.9"], ["1.1", "1.5"]),
    (">=1.2 <1.5", ["1.2"], ["1.5"]),
    ("1.2.3", ["1.2.3"], ["1.2.4", "1.2.2"]),                # a bare version is exact
    ("==1.2.3", ["1.2.3"], ["1.2.4"]),
    ("^1.2 || ^3.0", ["1.5", "3.1"], ["2.0", "4.0"]),
    (">=1.7.4,<1.8 || >1.8,<2.0.0", ["1.7.9", "1.9"], ["1.8", "2.0.0"]),  # as poetry.lock writes
    (">=2.7, !=3.0.*, !=3.1.*", ["2.7.18", "3.2"], ["3.0.1", "3.1.0"]),   # python-versions style
]


@pytest.mark.parametrize("text, allowed, refused", DOCUMENTED, ids=[d[0] for d in DOCUMENTED])
def test_poetry_constraints_mean_what_poetry_documents(text, allowed, refused):
    constraint = parse_constraint(text)
    for version in allowed:
        assert constraint.allows(version), f"{text} should allow {version} ({constraint})"
    for version in refused:
        assert not constraint.allows(version), f"{text} should refuse {version} ({constraint})"


def test_caret_and_tilde_become_pep440_ranges():
    assert [str(s) for s in parse_constraint("^0.2.3 || ~1.4").alternatives] == \
        ["<0.3.0,>=0.2.3", "<1.5,>=1.4"]


@pytest.mark.parametrize("text", ["banana", ">=", "1.0 - 2.0", "===1.0", ">=1.0 ||"])
def test_unreadable_constraints_are_errors(text):
    with pytest.raises(ConstraintError, match="constraint"):
        parse_constraint(text)


def test_every_constraint_in_the_committed_lock_parses():
    lock = tomllib.loads((ROOT / "poetry.lock").read_text())
    for package in lock["package"]:
        parse_constraint(package["python-versions"])
        for spec in package.get("dependencies", {}).values():
            for c in spec if isinstance(spec, list) else [spec]:
                parse_constraint(c if isinstance(c, str) else c.get("version", "*"))


# -- content-hash ----------------------------------------------------------------------------

# Hashes written by Poetry 1.8.5 itself (Factory().create_poetry(dir).locker._content_hash):
# no groups (the legacy keys hashed as null, `group` left out), and a source with a non-ASCII
# name, a list of per-marker constraints, extras and an optional group.
POETRY_WROTE = [
    ('''[tool.poetry]
name = "demo"
version = "0.1.0"
description = ""
authors = ["x <x@example.org>"]
[tool.poetry.dependencies]
python = ">=3.11,<3.12"
requests = "^2.31"
''', "065c1085b41748ff351767245f7bafd6783124d52e49faa85239174a761a06e3"),
    ('''[tool.poetry]
name = "demo"
version = "0.1.0"
description = "naïve ünicode outside the hashed tables"
authors = ["x <x@example.org>"]
[tool.poetry.dependencies]
python = ">=3.11,<3.12"
uvicorn = { version = "0.24.0", extras = ["standard"] }
numpy = [
    { version = ">=1.20,<2", markers = "python_version < '3.12'" },
    { version = ">=2", markers = "python_version >= '3.12'" },
]
cafe = { version = "~1.2", optional = true }
[tool.poetry.extras]
speed = ["cafe"]
[[tool.poetry.source]]
name = "mïrror"
url = "https://example.org/simple"
priority = "supplemental"
[tool.poetry.group.dev]
optional = true
[tool.poetry.group.dev.dependencies]
pytest = "8.3.3"
''', "d11bcf3411892ab4797c72e9ca034fe02b9ba7e84e97466ec4b5b204ffc89f30"),
]


@pytest.mark.parametrize("pyproject, expected", POETRY_WROTE, ids=["no-groups", "source-extras-groups"])
def test_content_hash_is_poetrys(pyproject, expected):
    assert content_hash(tomllib.loads(pyproject)["tool"]["poetry"]) == expected


def test_committed_lock_matches_pyproject():
    """Poetry wrote this lock's content-hash; ours must reproduce it byte for byte."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    lock = tomllib.loads((ROOT / "poetry.lock").read_text())
    assert content_hash(pyproject["tool"]["poetry"]) == lock["metadata"]["content-hash"], \
        "pyproject.toml changed since poetry.lock was written: re-lock with tools/poetry_lock.py"
    lock = PoetryLock(ROOT / "poetry.lock", ROOT / "pyproject.toml")  # the root check passes too
    assert lock.content_hash == content_hash(pyproject["tool"]["poetry"])


# -- the stale lock ----------------------------------------------------------------------------

def locked_version(name: str) -> str:
    lock = tomllib.loads((ROOT / "poetry.lock").read_text())
    return next(p["version"] for p in lock["package"] if p["name"] == name)


def pin_fastapi(text: str, version: str) -> str:
    """The repository's pyproject with every `fastapi = "..."` root pinned to `version`."""
    changed, count = re.subn(r'(?m)^fastapi = "[^"]*"', f'fastapi = "{version}"', text)
    assert count, "pyproject.toml has no `fastapi = \"...\"` root any more: update this test"
    return changed


@pytest.fixture
def repo(tmp_path):
    """A copy of what the builder reads (specs, app sources, pyproject, lock), safe to break."""
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "images", copy / "images")
    for package in ("fxservices", "bsopt", "servicekit"):
        shutil.copytree(ROOT / "src" / package, copy / "src" / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    shutil.copy(ROOT / "poetry.lock", copy / "poetry.lock")
    return copy


def test_edited_pyproject_is_refused_with_poetrys_meaning(repo):
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pin_fastapi(pyproject.read_text(), "0.999.0"))
    with pytest.raises(FxError) as err:
        PoetryLock(repo / "poetry.lock", pyproject)
    assert err.value.message == STALE
    assert err.value.where == str(repo / "poetry.lock")


def test_edits_outside_the_dependency_tables_keep_the_lock_fresh(repo):
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace(
        'version = "0.1.0"', 'version = "0.2.0"  # a comment', 1) + '\n[tool.fxstack.extra]\nx = 1\n')
    PoetryLock(repo / "poetry.lock", pyproject)


def test_constraint_check_catches_a_hand_fixed_hash(repo):
    """Someone 'fixes' the content-hash by hand: the locked fastapi still breaks the pin."""
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pin_fastapi(pyproject.read_text(), "0.999.0"))
    lock = repo / "poetry.lock"
    digest = content_hash(tomllib.loads(pyproject.read_text())["tool"]["poetry"])
    lock.write_text(re.sub(r'content-hash = "[0-9a-f]+"', f'content-hash = "{digest}"', lock.read_text()))
    with pytest.raises(FxError) as err:
        PoetryLock(lock, pyproject)
    assert err.value.message.startswith(STALE)
    assert f"asks for `fastapi` 0.999.0, the lock has {locked_version('fastapi')}" in err.value.message
    assert err.value.where == str(lock)


def test_stale_lock_stops_the_builder_before_it_writes_anything(repo, tmp_path, monkeypatch):
    from fxstack.image.builder import Builder

    monkeypatch.delenv("FXSTACK_CACHE", raising=False)
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pin_fastapi(pyproject.read_text(), "0.999.0"))
    state = tmp_path / "state"
    start = time.monotonic()
    with pytest.raises(FxError, match=re.escape(STALE)):
        Builder(root=repo, state=state, log=lambda m: None).build(["fx-fastapi"])
    assert time.monotonic() - start < 10
    assert not state.exists(), "the builder wrote into its state directory before refusing the lock"


@pytest.mark.parametrize("command", [["build", "fx-fastapi"], ["load", "fx-fastapi"],
                                     ["lock-export", "fastapi"]])
def test_commands_refuse_a_stale_lock(repo, tmp_path, command):
    pyproject = repo / "pyproject.toml"
    pyproject.write_text(pin_fastapi(pyproject.read_text(), "0.999.0"))
    state = tmp_path / "state"
    env = {**os.environ, "FXSTACK_ROOT": str(repo), "FXSTACK_STATE": str(state)}
    env.pop("FXSTACK_CACHE", None)
    start = time.monotonic()
    run = subprocess.run([sys.executable, "-m", "fxstack.cli", *command], env=env,
                         capture_output=True, text=True, timeout=60)
    seconds = time.monotonic() - start
    assert run.returncode == 2, run.stderr
    assert f"error: {repo / 'poetry.lock'}: {STALE}" in run.stderr
    assert "Traceback" not in run.stderr and run.stdout == ""
    assert seconds < 10, f"`fxstack {' '.join(command)}` took {seconds:.1f} s to refuse the lock"
    assert not state.exists()


# -- broken files: an FxError naming the file, the package and the field --------------------------

H = "sha256:" + "0" * 64
PACKAGE = '''
[[package]]
name = "web-app"
version = "1.0"
description = ""
optional = false
python-versions = ">=3.8"
files = [{file = "web_app-1.0-py3-none-any.whl", hash = "%s"}]

[[package]]
name = "numpy"
version = "1.26.4"
description = ""
optional = false
python-versions = ">=3.9"
files = [{file = "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.whl", hash = "%s"}]

[[package]]
name = "numpy"
version = "2.1.0"
description = ""
optional = false
python-versions = ">=3.9"
files = [{file = "numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.whl", hash = "%s"}]

[package.dependencies]
web-app = "^1.0"
''' % (H, H, H)
PYPROJECT = '''
[tool.poetry.dependencies]
python = ">=3.11,<3.12"
[tool.poetry.group.one.dependencies]
web-app = "^1.0"
numpy = "^1.26"
[tool.poetry.group.two.dependencies]
numpy = "~2.1"
[tool.poetry.group.old.dependencies]
numpy = { version = "^0.9", python = "<3.10" }
'''


def project(tmp_path, pyproject=PYPROJECT, packages=PACKAGE, digest=None):
    digest = digest or content_hash(tomllib.loads(pyproject)["tool"]["poetry"])
    (tmp_path / "pyproject.toml").write_text(pyproject)
    (tmp_path / "poetry.lock").write_text(
        packages + f'\n[metadata]\nlock-version = "2.0"\ncontent-hash = "{digest}"\n')
    return PoetryLock(tmp_path / "poetry.lock", tmp_path / "pyproject.toml")


def test_several_locked_versions_are_told_apart_by_caret_and_tilde(tmp_path):
    lock = project(tmp_path)
    assert {p.name: p.version for p in lock.resolve(["one"])}["numpy"] == "1.26.4"
    assert {p.name: p.version for p in lock.resolve(["two"])} == {"numpy": "2.1.0", "web-app": "1.0"}
    assert lock.resolve(["old"]) == []  # its `python` restriction leaves it out on 3.11


def test_a_single_locked_version_must_fit_too(tmp_path):
    lock = project(tmp_path, packages=PACKAGE.replace('web-app = "^1.0"', 'web-app = "^2.0"'))
    with pytest.raises(FxError, match=r"`web-app` \^2.0 is required, the lock has 1.0") as err:
        lock.resolve(["two"])
    assert STALE in str(err.value) and "numpy 2.1.0" in str(err.value)


@pytest.mark.parametrize("field", ["version", "files", "python-versions", "name"])
def test_lock_entry_missing_a_field_is_named(tmp_path, field):
    broken = re.sub(rf'(?m)^{field} = .*\n', "", PACKAGE, count=1)
    with pytest.raises(FxError) as err:
        project(tmp_path, packages=broken)
    assert err.value.where == str(tmp_path / "poetry.lock")
    assert f"has no `{field}`" in err.value.message and "[[package]] #1" in err.value.message
    if field != "name":
        assert "`web-app`" in err.value.message


@pytest.mark.parametrize("bad, message", [
    ('files = [{file = "web_app-1.0-py3-none-any.whl"}]', "every `files` entry needs `file` and `hash`"),
    ('files = "web_app.whl"', "`files` must be a list"),
])
def test_malformed_files_are_named(tmp_path, bad, message):
    broken = re.sub(r'(?m)^files = .*$', bad, PACKAGE, count=1)
    with pytest.raises(FxError, match=re.escape(message)) as err:
        project(tmp_path, packages=broken)
    assert "`web-app`" in str(err.value) and str(tmp_path / "poetry.lock") in str(err.value)


def test_lock_version_that_is_not_pep440_is_named(tmp_path):
    with pytest.raises(FxError, match=r"\(`web-app`\): `version` 'one' is not a PEP 440 version"):
        project(tmp_path, packages=PACKAGE.replace('version = "1.0"', 'version = "one"', 1))


def test_pyproject_that_is_not_toml_is_named(tmp_path):
    project(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.poetry\nname = ")
    with pytest.raises(FxError, match="not valid TOML") as err:
        PoetryLock(tmp_path / "poetry.lock", tmp_path / "pyproject.toml")
    assert err.value.where == str(tmp_path / "pyproject.toml")


def test_lock_that_is_not_toml_or_has_no_hash_is_named(tmp_path):
    project(tmp_path)
    lock = tmp_path / "poetry.lock"
    lock.write_text(PACKAGE)  # no [metadata]
    with pytest.raises(FxError, match=r"has no \[metadata\] content-hash") as err:
        PoetryLock(lock, tmp_path / "pyproject.toml")
    assert err.value.where == str(lock)
    lock.write_text("[[package]\n")
    with pytest.raises(FxError, match="not valid TOML"):
        PoetryLock(lock, tmp_path / "pyproject.toml")


def test_unreadable_root_constraint_is_named(tmp_path):
    pyproject = PYPROJECT.replace('numpy = "~2.1"', 'numpy = "two-ish"')
    with pytest.raises(FxError, match="cannot read version constraint 'two-ish'") as err:
        project(tmp_path, pyproject=pyproject)
    assert err.value.where == f"{tmp_path / 'pyproject.toml'}: group two: numpy"
