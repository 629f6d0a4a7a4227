"""Edits to a copy of the repository, evaluated against the stand-ins: a change to a service's
code changes only its app layer; every spec field changes the flake's output; a misspelt
argument to nixpkgs, nix2container or poetry2nix fails the evaluation."""

from __future__ import annotations

import copy
import sys

import pytest

import fxnix

sys.path.insert(0, str(fxnix.ROOT / "src"))
from fxstack.errors import FxError  # noqa: E402
from fxstack.lock import nixpins  # noqa: E402

pytestmark = [pytest.mark.unit, fxnix.needs_nix]


def app_layer(flake, name):
    return flake.layer_paths(name)[-1]


def layer_map(flake):
    return {name: flake.layer_paths(name) for name in flake.data["packages"]}


# --- a code change rebuilds one app layer ------------------------------------------------------

@pytest.mark.parametrize("edit,changed", [
    ("src/fxservices/inference", ["fx-fastapi"]),
    ("src/fxservices/mlflow_server", ["fx-mlflow"]),
    ("src/fxservices/fingpt", ["fx-fingpt"]),
    # the three Airflow images share one app layer
    ("src/fxservices/dags", ["fx-airflow-scheduler", "fx-airflow-webserver", "fx-airflow-worker"]),
    ("images/files/postgres/fx-postgres-entrypoint", ["postgres"]),
])
def test_code_change_changes_only_that_app_layer(flake, repo_copy, edit, changed):
    target = repo_copy / edit
    if target.is_dir():
        target = target / "__init__.py"
    target.write_text(target.read_text() + "\n# changed\n")
    after = fxnix.evaluate_flake(repo_copy)

    before_layers, after_layers = layer_map(flake), layer_map(after)
    for name in before_layers:
        old, new = before_layers[name], after_layers[name]
        assert len(old) == len(new)
        if name in changed:
            # every layer the same but the last (the app layer) ...
            assert old[:-1] == new[:-1], name
            assert old[-1] != new[-1], name
            # ... whose arguments differ only in the copied sources
            old_app, new_app = flake.drvs[old[-1]]["args"], after.drvs[new[-1]]["args"]
            assert old_app["layers"] == new_app["layers"] and old_app["metadata"] == new_app["metadata"]
        else:
            assert old == new, name
            assert flake.data["images"][name]["drv"] == after.data["images"][name]["drv"], name
    # shared app layers stay shared
    assert len({after_layers[n][-1] for n in changed}) == 1


def test_lock_change_rebuilds_environments_not_the_system_layer(flake, repo_copy):
    lock = repo_copy / "poetry.lock"
    lock.write_text(lock.read_text() + "\n# changed\n")
    after = fxnix.evaluate_flake(repo_copy)
    for name in flake.data["packages"]:
        old, new = flake.layer_paths(name), after.layer_paths(name)
        assert old[0] == new[0], name
        if flake.image(name)["args"]["config"]["User"] == "fxuser":
            assert old[1] != new[1], name


# --- every spec field is used -----------------------------------------------------------------

def _set(key, value):
    def edit(raw):
        raw[key] = value
    return edit


def _pop(key):
    def edit(raw):
        raw.pop(key)
    return edit


# field -> (image to edit, edit). The image is the one whose output must change.
MUTATIONS = {
    "name": ("redis", None),                    # special-cased: the file is renamed with it
    "description": ("fx-mlflow", _set("description", "MLflow, changed")),
    "kind": ("fx-mlflow", _set("kind", "service")),
    "deploy": ("fx-mlflow", _set("deploy", False)),
    "gpu": ("fx-mlflow", _set("gpu", True)),
    "portable": ("grafana", _set("portable", True)),
    "portable_reason": ("grafana", _set("portable_reason", "changed")),
    "base": ("fx-fingpt", _set("base", "fx-base")),
    "groups": ("fx-mlflow", _set("groups", ["fastapi"])),
    "app": ("fx-mlflow", lambda raw: raw["app"].pop()),
    "user": ("redis", _set("user", "valkey")),
    "uid": ("redis", _set("uid", 4242)),
    "workdir": ("redis", _set("workdir", "/srv")),
    "entrypoint": ("redis", _set("entrypoint", ["/usr/bin/tini", "-g", "--"])),
    "cmd": ("redis", _set("cmd", ["redis-server"])),
    "ports": ("redis", _set("ports", [6380])),
    "volumes": ("redis", _set("volumes", ["/data", "/backup"])),
    "env": ("redis", _set("env", {"REDIS_EXTRA": "1"})),
    "labels": ("redis", _set("labels", {"org.opencontainers.image.title": "redis", "x": "y"})),
    "packages": ("redis", lambda raw: raw["packages"]["nixpkgs"].append("jq")),
    "trim": ("fx-fastapi", lambda raw: raw["trim"]["drop"].pop()),
}


def fingerprint(flake, name):
    """What the flake makes of one image: the image derivation, its manifest entry, the loaders."""
    manifest = flake.drvs[flake.data["legacy"]["image-manifest"]]["args"]["text"]
    loaders = flake.drvs[flake.data["legacy"]["image-loaders"]]["args"]["text"]
    return flake.data["images"].get(name, {}).get("drv"), manifest, loaders


def test_every_spec_field_has_a_mutation():
    from fxstack.specs import FIELDS
    assert sorted(MUTATIONS) == sorted(FIELDS), (
        "a spec field was added or removed: make the flake use it (nix/images.nix) and add it here")


@pytest.mark.parametrize("field", sorted(MUTATIONS))
def test_changing_a_spec_field_changes_the_flake_output(flake, repo_copy, field):
    name, edit = MUTATIONS[field]
    raw = fxnix.read_spec(repo_copy, name)
    assert field == "name" or field in raw or field in ("uid", "deploy", "gpu", "portable", "base", "env"), field
    if field == "name":
        (repo_copy / "images" / f"{name}.toml").unlink()
        raw["name"] = "redis-renamed"
        fxnix.write_spec(repo_copy, raw)
        after = fxnix.evaluate_flake(repo_copy)
        assert "redis-renamed" in after.data["packages"] and name not in after.data["packages"]
        assert after.image_args("redis-renamed")["name"] == "redis-renamed"
        return
    before_raw = copy.deepcopy(raw)
    edit(raw)
    assert raw != before_raw
    fxnix.write_spec(repo_copy, raw)
    # A new group list (fx-fingpt on fx-base) needs its environment in nix/lock-pins.json, as
    # after any spec edit: regenerate it as a user would (python -m fxstack.lock.nixpins).
    try:
        nixpins.write(repo_copy)
    except FxError:
        pass  # a spec the Python loader refuses: the flake must refuse it too (below)
    try:
        after = fxnix.evaluate_flake(repo_copy)
    except fxnix.NixError as exc:
        # Refusing the edit with a message naming the spec also counts as using the field.
        assert f"images/{name}.toml" in str(exc), str(exc)
        return
    assert fingerprint(after, name) != fingerprint(flake, name), f"the flake ignores `{field}`"


# --- misspelt arguments fail -------------------------------------------------------------------

@pytest.mark.parametrize("path,old,new,message", [
    # nix2container.buildLayer
    ("nix/images.nix", "      layers = below;\n      metadata = { created_by = \"fxstack: app code\"; };",
     "      layer = below;\n      metadata = { created_by = \"fxstack: app code\"; };", "unexpected argument 'layer'"),
    # nix2container.buildImage
    ("nix/images.nix", "      created = \"1970-01-01T00:00:01Z\";", "      createdAt = \"1970-01-01T00:00:01Z\";",
     "unexpected argument 'createdAt'"),
    # an OCI config key the real code would silently drop
    ("nix/images.nix", "    ExposedPorts = ", "    ExposedPort = ", "unknown key\\(s\\) ExposedPort"),
    # a perms entry key
    ("nix/images.nix", "mode = \"1777\";", "mod = \"1777\";", "unknown key\\(s\\) mod"),
    # poetry2nix.mkPoetryPackages
    ("nix/python.nix", "    preferWheels = true;", "    preferWheel = true;", "unexpected argument 'preferWheel'"),
    # a Poetry group that does not exist
    ("nix/outputs.nix", "harnessPython.env [ \"main\" \"dev\" ]", "harnessPython.env [ \"main\" \"devel\" ]",
     "unknown Poetry group\\(s\\) devel"),
    # nixpkgs mkShell
    ("nix/outputs.nix", "  devShells.${system}.default = pkgs.mkShell {\n    packages =",
     "  devShells.${system}.default = pkgs.mkShell {\n    package =", "unexpected argument 'package'"),
    # nixpkgs writeShellApplication
    ("nix/stack.nix", "        runtimeInputs = [ (loaders gpu) (perImage gpu) pkgs.docker-compose ];", "        runtimeInput = [ (loaders gpu) (perImage gpu) pkgs.docker-compose ];",
     "unexpected argument 'runtimeInput'"),
    # nixpkgs import: a config option
    ("nix/outputs.nix", "allowUnfree = true;", "allowUnFree = true;", "unknown key\\(s\\) allowUnFree"),
    # an override for a package that is not in the lock would not call overridePythonAttrs on it
    ("nix/poetry-overrides.nix", "nvidia-cusparselt-cu12.overridePythonAttrs", "nvidia-cusparselt-cu12.overridePythonAtrs",
     "overridePythonAtrs"),
])
def test_misspelt_argument_fails(flake, repo_copy, path, old, new, message):
    file = repo_copy / path
    text = file.read_text()
    assert text.count(old) == 1, f"{old!r} not found once in {path}"
    file.write_text(text.replace(old, new))
    with pytest.raises(fxnix.NixError, match=message):
        fxnix.evaluate_flake(repo_copy)


def test_unfree_cuda_outside_the_cuda_import_fails(flake, repo_copy):
    file = repo_copy / "nix" / "images.nix"
    text = file.read_text()
    old = "pkgsFor = spec: if spec.gpu then pkgsCuda else pkgs;"
    assert old in text
    file.write_text(text.replace(old, "pkgsFor = spec: pkgs;"))
    with pytest.raises(fxnix.NixError, match="unfree license"):
        fxnix.evaluate_flake(repo_copy)
