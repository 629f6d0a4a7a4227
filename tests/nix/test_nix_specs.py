"""nix/specs.nix (pure builtins) reads every images/*.toml to exactly what the Python loader reads."""

from __future__ import annotations

import pytest

import fxnix

pytestmark = [pytest.mark.unit, fxnix.needs_nix]

SPEC_NAMES = sorted(p.stem for p in (fxnix.ROOT / "images").glob("*.toml"))


@pytest.fixture(scope="module")
def nix_specs(snapshot):
    return fxnix.nix_specs(snapshot)


def test_same_images(nix_specs, specs):
    assert sorted(nix_specs) == sorted(specs) == SPEC_NAMES


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_same_resolved_spec(nix_specs, specs, name):
    assert nix_specs[name] == specs[name]


def test_every_field_of_the_python_loader_is_read(nix_specs):
    from fxstack.specs import FIELDS
    fields = fxnix.eval_json(None, expr=f"(import {fxnix.ROOT / 'nix' / 'specs.nix'} {{ root = {fxnix.ROOT}; }}).fields")
    assert sorted(fields) == sorted(FIELDS)
    for spec in nix_specs.values():
        assert set(spec) == set(FIELDS)


def test_inheritance_edge_cases_match(repo_copy):
    """Duplicates, overrides and inherited fields resolve the same way on both sides."""
    base = fxnix.read_spec(repo_copy, "fx-base")
    base["packages"]["nixpkgs"].append("coreutils")
    base["labels"]["org.example.team"] = "fx"
    fxnix.write_spec(repo_copy, base)
    child = fxnix.read_spec(repo_copy, "fx-mlflow")
    child.update(
        groups=["base", "mlflow", "fastapi"],   # base repeated, new ones appended in order
        user="mlflow", workdir="/srv",          # overridden; uid, entrypoint, cmd inherited
        env={"LANG": "en_US.UTF-8", "EXTRA": "1"},
        labels={"org.example.team": "ml"},
        packages={"nixpkgs": ["coreutils", "jq", "tini"], "debian": ["jq"]},
        volumes=["/data"],
    )
    child.pop("cmd", None)
    fxnix.write_spec(repo_copy, child)
    assert fxnix.nix_specs(repo_copy) == fxnix.python_specs(repo_copy)


def test_unknown_field_fails(repo_copy):
    raw = fxnix.read_spec(repo_copy, "redis")
    raw["portz"] = [1]
    fxnix.write_spec(repo_copy, raw)
    with pytest.raises(fxnix.NixError, match="unknown field `portz`"):
        fxnix.nix_specs(repo_copy)


def test_missing_base_fails(repo_copy):
    raw = fxnix.read_spec(repo_copy, "fx-mlflow")
    raw["base"] = "fx-nope"
    fxnix.write_spec(repo_copy, raw)
    with pytest.raises(fxnix.NixError, match="base image `fx-nope` has no spec"):
        fxnix.nix_specs(repo_copy)
