"""The stand-ins keep the real argument sets, and nix/ stays pure.

The expected sets are copied from the real sources at the pinned revisions:
  nix2container 78aadfc4 default.nix (buildImage, buildLayer; entry point `{ pkgs, system }`),
  poetry2nix ce2369db default.nix (mkPoetryEnv, mkPoetryPackages; entry point `{ pkgs, lib }`),
  nixpkgs pkgs/build-support/trivial-builders (writeTextFile, writeShellApplication),
  pkgs/build-support/buildenv (buildEnv), pkgs/top-level/impure.nix (the import).
A stand-in that accepts more than the real function would let a misspelt argument through."""

from __future__ import annotations

import re

import pytest

import fxnix

pytestmark = [pytest.mark.unit, fxnix.needs_nix]

S = fxnix.HERE / "standins"

REAL = {
    "nix2container": ({"pkgs": True, "system": False}, f"import {S}/nix2container"),
    "nix2container.buildImage": ({
        "name": False, "tag": True, "config": True, "layers": True, "copyToRoot": True, "fromImage": True,
        "arch": True, "perms": True, "maxLayers": True, "initializeNixDatabase": True, "nixUid": True,
        "nixGid": True, "created": True, "contents": True, "meta": True,
    }, f"(import {S}/nix2container {{ pkgs = {{ }}; system = \"x86_64-linux\"; }}).nix2container.buildImage"),
    "nix2container.buildLayer": ({
        "deps": True, "copyToRoot": True, "ignore": True, "layers": True, "reproducible": True, "perms": True,
        "maxLayers": True, "contents": True, "metadata": True,
    }, f"(import {S}/nix2container {{ pkgs = {{ }}; system = \"x86_64-linux\"; }}).nix2container.buildLayer"),
    "poetry2nix": ({"pkgs": True, "lib": True}, f"import {S}/poetry2nix"),
    "poetry2nix.mkPoetryEnv": ({
        "projectDir": True, "pyproject": True, "poetrylock": True, "overrides": True, "pwd": True, "python": True,
        "preferWheels": True, "editablePackageSources": True, "extraPackages": True, "groups": True,
        "checkGroups": True, "extras": True,
    }, f"(import {S}/poetry2nix {{ pkgs = {{ }}; }}).mkPoetryEnv"),
    "poetry2nix.mkPoetryPackages": ({
        "projectDir": True, "pyproject": True, "poetrylock": True, "poetrylockPos": True, "overrides": True,
        "python": True, "pwd": True, "preferWheels": True, "editablePackageSources": True, "pyProject": True,
        "groups": True, "checkGroups": True, "extras": True,
    }, f"(import {S}/poetry2nix {{ pkgs = {{ }}; }}).mkPoetryPackages"),
    "nixpkgs": ({
        "localSystem": True, "system": True, "platform": True, "crossSystem": True, "config": True,
        "overlays": True, "crossOverlays": True,
    }, f"import {S}/nixpkgs"),
    "nixpkgs.writeShellApplication": ({
        "name": False, "text": False, "runtimeInputs": True, "runtimeEnv": True, "meta": True, "passthru": True,
        "checkPhase": True, "excludeShellChecks": True, "extraShellCheckFlags": True, "bashOptions": True,
        "derivationArgs": True,
    }, f"(import {S}/nixpkgs {{ system = \"x86_64-linux\"; }}).writeShellApplication"),
    "nixpkgs.writeTextFile": ({
        "name": False, "text": False, "executable": True, "destination": True, "checkPhase": True, "meta": True,
        "passthru": True, "allowSubstitutes": True, "preferLocalBuild": True, "derivationArgs": True,
    }, f"(import {S}/nixpkgs {{ system = \"x86_64-linux\"; }}).writeTextFile"),
}


@pytest.mark.parametrize("fn", sorted(REAL))
def test_standin_has_the_real_argument_set(fn):
    expected, expr = REAL[fn]
    assert fxnix.eval_json(None, expr=f"builtins.functionArgs ({expr})") == expected


def test_nix_dir_is_pure():
    """No channel lookups, current system, environment or clock in the flake's code."""
    files = [fxnix.ROOT / "flake.nix", *sorted((fxnix.ROOT / "nix").rglob("*.nix"))]
    for path in files:
        code = "\n".join(line for line in path.read_text().splitlines() if not line.lstrip().startswith("#"))
        for bad in (r"<nixpkgs>", r"currentSystem", r"getEnv", r"currentTime", r"builtins\.fetch", r"--impure"):
            assert not re.search(bad, code), f"{path.relative_to(fxnix.ROOT)} uses {bad}"
