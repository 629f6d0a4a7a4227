"""Walking poetry.lock: groups as roots, markers for the image's CPython 3.11, extras, wheels."""

import tomllib
from pathlib import Path

import pytest

from fxstack.errors import FxError
from fxstack.lock.poetry_lock import PoetryLock
from fxstack.lock.pyproject import content_hash

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit

H = "sha256:" + "0" * 63

LOCK = f'''
[[package]]
name = "Web-App"
version = "1.0"
description = ""
optional = false
python-versions = ">=3.8"
files = [
    {{file = "web_app-1.0-py3-none-any.whl", hash = "{H}1"}},
    {{file = "web_app-1.0.tar.gz", hash = "{H}2"}},
]
[package.dependencies]
colorama = {{version = ">=0.4", markers = "sys_platform == \\"win32\\""}}
httptools = {{version = ">=0.5", optional = true, markers = "extra == \\"standard\\""}}
numpy = [
    {{version = ">=1.20,<2", markers = "python_version < \\"3.12\\""}},
    {{version = ">=2", markers = "python_version >= \\"3.12\\""}},
]
tomli = {{version = "*", markers = "python_version < \\"3.11\\""}}
[package.extras]
standard = ["httptools (>=0.5)"]

[[package]]
name = "colorama"
version = "0.4.6"
description = ""
optional = false
python-versions = "*"
files = [{{file = "colorama-0.4.6-py2.py3-none-any.whl", hash = "{H}3"}}]

[[package]]
name = "httptools"
version = "0.6.1"
description = ""
optional = false
python-versions = "*"
files = [
    {{file = "httptools-0.6.1-cp311-cp311-win_amd64.whl", hash = "{H}4"}},
    {{file = "httptools-0.6.1-cp311-cp311-manylinux_2_5_x86_64.manylinux1_x86_64.manylinux_2_17_x86_64.manylinux2014_x86_64.whl", hash = "{H}5"}},
    {{file = "httptools-0.6.1-cp311-cp311-musllinux_1_1_x86_64.whl", hash = "{H}6"}},
    {{file = "httptools-0.6.1-cp310-cp310-manylinux_2_17_x86_64.whl", hash = "{H}7"}},
]

[[package]]
name = "numpy"
version = "1.26.4"
description = ""
optional = false
python-versions = ">=3.9"
files = [{{file = "numpy-1.26.4-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl", hash = "{H}8"}}]

[[package]]
name = "numpy"
version = "2.1.0"
description = ""
optional = false
python-versions = ">=3.12"
files = [{{file = "numpy-2.1.0-cp312-cp312-manylinux_2_17_x86_64.whl", hash = "{H}9"}}]

[[package]]
name = "tomli"
version = "2.0.1"
description = ""
optional = false
python-versions = ">=3.7"
files = [{{file = "tomli-2.0.1-py3-none-any.whl", hash = "{H}a"}}]

[[package]]
name = "puresdist"
version = "0.1"
description = ""
optional = false
python-versions = "*"
files = [{{file = "puresdist-0.1.tar.gz", hash = "{H}b"}}]

[metadata]
lock-version = "2.0"
python-versions = ">=3.11,<3.12"
content-hash = "@HASH@"
'''

PYPROJECT = '''
[tool.poetry.dependencies]
python = ">=3.11,<3.12"
[tool.poetry.group.plain.dependencies]
web-app = "1.0"
[tool.poetry.group.fast.dependencies]
web_app = { version = "1.0", extras = ["standard"] }
[tool.poetry.group.legacy.dependencies]
puresdist = "0.1"
'''


def write_project(tmp_path, pyproject: str = PYPROJECT, lock: str = LOCK) -> PoetryLock:
    """pyproject.toml and a poetry.lock made for it (its content-hash as Poetry would write it)."""
    digest = content_hash(tomllib.loads(pyproject)["tool"]["poetry"])
    (tmp_path / "poetry.lock").write_text(lock.replace("@HASH@", digest))
    (tmp_path / "pyproject.toml").write_text(pyproject)
    return PoetryLock(tmp_path / "poetry.lock", tmp_path / "pyproject.toml")


@pytest.fixture
def lock(tmp_path):
    return write_project(tmp_path)


def names(packages):
    return [(p.name, p.version) for p in packages]


def test_markers_evaluated_for_cpython_311_linux(lock):
    # colorama is win32-only, tomli only below 3.11; numpy picks the <3.12 branch
    assert names(lock.resolve(["plain"])) == [("numpy", "1.26.4"), ("web-app", "1.0")]


def test_extras_followed_only_when_asked(lock):
    assert ("httptools", "0.6.1") in names(lock.resolve(["fast"]))
    assert "httptools" not in [n for n, _ in names(lock.resolve(["plain"]))]


def test_best_wheel_is_manylinux_cp311(lock):
    files = {f.name: f for f in lock.files_for(["fast"])}
    assert files["httptools"].filename.startswith("httptools-0.6.1-cp311-cp311-manylinux_2_5")
    assert files["web-app"].filename == "web_app-1.0-py3-none-any.whl"
    assert files["numpy"].sha256 == ("0" * 63) + "8"


def test_sdist_only_package_falls_back_to_sdist(lock):
    (f,) = lock.files_for(["legacy"])
    assert f.filename == "puresdist-0.1.tar.gz" and not f.is_wheel


def test_unknown_group_is_named(lock):
    with pytest.raises(FxError, match="unknown Poetry group `nope`"):
        lock.resolve(["nope"])


def _with_exclude(tmp_path, table: str):
    return write_project(tmp_path, PYPROJECT + "\n[tool.fxstack.exclude]\n" + table)


def test_excluded_package_is_left_out_with_what_only_it_needs(tmp_path):
    lock = _with_exclude(tmp_path, 'httptools = "only a benchmark needs it"\n')
    assert "httptools" not in [n for n, _ in names(lock.resolve(["fast"]))]
    assert ("numpy", "1.26.4") in names(lock.resolve(["fast"]))  # web-app still needs it
    lock = _with_exclude(tmp_path, 'numpy = "not at run time"\n')
    assert names(lock.resolve(["plain"])) == [("web-app", "1.0")]


@pytest.mark.parametrize("table, message", [
    ('httptools = ""\n', "`httptools` needs a reason"),
    ('httptools = 3\n', "`httptools` needs a reason"),
    ('htptools = "typo"\n', "`htptools` is not in the lock"),
    ('web-app = "the root"\n', "`web-app` is excluded but group `plain` asks for it directly"),
])
def test_bad_exclusions_name_the_table_and_the_package(tmp_path, table, message):
    with pytest.raises(FxError) as err:
        _with_exclude(tmp_path, table)
    assert message in str(err.value) and "[tool.fxstack.exclude]" in str(err.value)
    assert "pyproject.toml" in str(err.value)


def test_real_lock_groups():
    lock = PoetryLock(ROOT / "poetry.lock", ROOT / "pyproject.toml")
    api = {p.name: p.version for p in lock.resolve(["base", "fastapi"])}
    air = {p.name: p.version for p in lock.resolve(["base", "airflow"])}
    assert api["fastapi"] and api["uvloop"] and api["httptools"]  # uvicorn[standard]
    assert "apache-airflow" not in api and "torch" not in api
    assert air["apache-airflow"] == "2.10.5" and air["celery"]  # the CeleryExecutor's needs
    assert api["pydantic"] == air["pydantic"] == "2.5.3"  # one pydantic for feast + the API
    # redis needs async-timeout only up to Python 3.11.2: the image's Debian interpreter
    # (3.11.2) gets it although the host running the build (3.11.7 here) would not.
    assert "async-timeout" in api
    # feast asks for SQLAlchemy[mypy]; pyproject excludes mypy, and with it what only it needs
    assert "sqlalchemy" in api and not {"mypy", "ast-serialize", "librt", "mypy-extensions"} & set(api)
    assert "pathspec" in air  # airflow needs it too: it stays where airflow is
    # mlflow-skinny's databricks-sdk is excluded too, and google-auth and cryptography with it
    assert not {"databricks-sdk", "google-auth", "cryptography"} & set(api)
    for f in lock.files_for(["base", "fastapi"]):
        assert not f.is_wheel or "win" not in f.filename and "macosx" not in f.filename


@pytest.mark.parametrize("path,args", [
    ("requirements/harness.txt", (["main", "dev"], ())),
    ("requirements/tests.txt", (["main", "dev", "base", "fastapi", "mlflow", "fingpt", "bsopt-api",
                                 "bsopt-pricing", "bsopt-worker", "bsopt-scraper"],
                                ("torch", "nvidia-*", "triton", "bitsandbytes"))),
])
def test_host_requirements_match_the_lock(path, args):
    from fxstack.lock.poetry_lock import export_requirements

    lock = PoetryLock(ROOT / "poetry.lock", ROOT / "pyproject.toml")
    assert (ROOT / path).read_text() == export_requirements(lock, *args), \
        f"{path} is stale: regenerate it with `./fx lock-export` (see its first line)"
