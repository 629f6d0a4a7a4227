"""The spec loader: all seventeen specs valid; every kind of bad input named by file and field."""

import shutil
from pathlib import Path

import pytest

from fxstack.errors import FxError
from fxstack.specs import load_specs

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.unit

EXPECTED = {"fx-base", "fx-airflow-scheduler", "fx-airflow-webserver", "fx-airflow-worker",
            "fx-fastapi", "fx-fingpt", "fx-mlflow", "postgres", "redis", "prometheus",
            "grafana", "redis-exporter",
            # the second project (compose/bsopt.yml)
            "bsopt-api", "bsopt-neural-pricing", "bsopt-worker", "bsopt-scraper",
            # the entry address of a stack on Docker Swarm (fxstack deploy swarm)
            "haproxy"}


@pytest.fixture
def repo(tmp_path):
    """A copy of the repository's specs and pyproject, safe to break."""
    shutil.copytree(ROOT / "images", tmp_path / "images")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    # all of src/: every image's `app` entries must exist (a new image brings its own)
    shutil.copytree(ROOT / "src", tmp_path / "src", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def edit(repo, name, old, new):
    path = repo / "images" / f"{name}.toml"
    text = path.read_text()
    assert old in text, f"{old!r} not in {name}.toml"
    path.write_text(text.replace(old, new, 1))
    return path


def test_all_seventeen_specs_valid():
    specs = load_specs(ROOT)
    assert set(specs) == EXPECTED


def test_base_inheritance_resolves_groups_env_and_packages():
    specs = load_specs(ROOT)
    fastapi, base = specs["fx-fastapi"], specs["fx-base"]
    assert fastapi.groups == ("base", "fastapi")
    assert fastapi.user == "fxuser" and fastapi.uid == 1000
    assert fastapi.packages["debian"] == base.packages["debian"]
    assert fastapi.env["PYTHONPATH"] == "/app" and fastapi.env["FEAST_REPO_PATH"]
    assert fastapi.entrypoint == ("/usr/bin/tini", "--")
    # the three Airflow images differ only in their command
    a, b = specs["fx-airflow-scheduler"], specs["fx-airflow-worker"]
    assert a.groups == b.groups and a.app == b.app and a.cmd != b.cmd


@pytest.mark.parametrize("name,old,new,field,words", [
    ("fx-fastapi", 'kind = "python"', 'kind = "python"\ncolour = "blue"', "colour", "unknown field"),
    ("redis", 'description = "Redis 7', 'descripton = "Redis 7', "description", "did you mean"),
    ("redis", 'description = "Redis 7', '# "Redis 7', "description", "missing required field"),
    ("fx-fastapi", "ports = [8000]", 'ports = ["8000"]', "ports", "must be a list of integers"),
    ("fx-fastapi", "ports = [8000]", "ports = [80000]", "ports", "out of range"),
    ("fx-fastapi", 'groups = ["fastapi"]', 'groups = ["fastapii"]', "groups", "unknown Poetry group"),
    ("fx-fastapi", 'base = "fx-base"', 'base = "fx-nope"', "base", "has no spec"),
    ("fx-fastapi", 'kind = "python"', 'kind = "pyhton"', "kind", "is not one of"),
    ("grafana", "portable_reason = ", "x_reason = ", "x_reason", "unknown field"),
])
def test_bad_input_names_file_and_field(repo, name, old, new, field, words):
    path = edit(repo, name, old, new)
    with pytest.raises(FxError) as err:
        load_specs(repo)
    text = str(err.value)
    assert str(path) in text and field in text and words in text


def test_two_images_claiming_one_name(repo):
    src = (repo / "images" / "redis.toml").read_text()
    (repo / "images" / "redis2.toml").write_text(src)
    with pytest.raises(FxError) as err:
        load_specs(repo)
    # either the duplicate or the file/name mismatch is reported, both naming the file
    assert "redis2.toml" in str(err.value) and "name" in str(err.value)


def test_base_loop_detected(repo):
    edit(repo, "fx-base", 'kind = "python"', 'kind = "python"\nbase = "fx-fastapi"')
    with pytest.raises(FxError, match="loops"):
        load_specs(repo)


def test_missing_app_source(repo):
    shutil.rmtree(repo / "src" / "fxservices" / "inference")
    with pytest.raises(FxError) as err:
        load_specs(repo)
    assert "fx-fastapi.toml" in str(err.value) and "src/fxservices/inference" in str(err.value)


def test_invalid_toml_named(repo):
    (repo / "images" / "redis.toml").write_text("name = \n")
    with pytest.raises(FxError, match="redis.toml.*not valid TOML"):
        load_specs(repo)
