"""flake.lock is well-formed: every input locked by rev and narHash, consistent with flake.nix."""

from __future__ import annotations

import json
import re
import subprocess

import pytest

import fxnix

pytestmark = [pytest.mark.unit]

LOCK = json.loads((fxnix.ROOT / "flake.lock").read_text())
FLAKE = (fxnix.ROOT / "flake.nix").read_text()
INPUTS = {"nixpkgs": ("NixOS", "nixpkgs"), "nix2container": ("nlewo", "nix2container"),
          "poetry2nix": ("nix-community", "poetry2nix")}


def test_lock_shape():
    assert LOCK["version"] == 7
    assert LOCK["root"] == "root"
    assert LOCK["nodes"]["root"] == {"inputs": {name: name for name in INPUTS}}
    # three nodes and the root: no tree of transitive inputs
    assert set(LOCK["nodes"]) == {"root", *INPUTS}


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_input_locked_by_rev_and_narhash(name):
    node = LOCK["nodes"][name]
    locked, original = node["locked"], node["original"]
    owner, repo = INPUTS[name]
    assert locked["type"] == original["type"] == "github"
    assert (locked["owner"], locked["repo"]) == (original["owner"], original["repo"]) == (owner, repo)
    assert re.fullmatch(r"[0-9a-f]{40}", locked["rev"])
    assert original.get("rev") == locked["rev"]
    assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", locked["narHash"])
    assert isinstance(locked["lastModified"], int) and locked["lastModified"] > 1_600_000_000
    # flake.nix names the same revision
    assert f"github:{owner}/{repo}/{locked['rev']}" in FLAKE
    # nix2container and poetry2nix are plain sources imported with the pinned nixpkgs
    assert node.get("flake", True) is (name == "nixpkgs")
    if name != "nixpkgs":
        assert re.search(rf"{name} = \{{\s*url = \"github:{owner}/{repo}/{locked['rev']}\";\s*flake = false;", FLAKE)


def test_one_consistent_set_of_revisions():
    """nixpkgs is the revision poetry2nix's CI last ran against (see docs/nix.md)."""
    assert LOCK["nodes"]["nixpkgs"]["locked"]["rev"] == "75e28c029ef2605f9841e0baa335d70065fe7ae2"
    assert LOCK["nodes"]["poetry2nix"]["locked"]["lastModified"] <= LOCK["nodes"]["nix2container"]["locked"]["lastModified"]
    assert "75e28c02" in FLAKE  # the reason is written next to the inputs


@pytest.mark.skipif(fxnix.NIX is None, reason=fxnix.SKIP_REASON)
def test_nix_accepts_the_lock_without_updating_it(tmp_path):
    """Nix reads flake.lock as the lock of flake.nix's inputs: offline, nothing to fetch or update."""
    src = tmp_path / "flake"
    src.mkdir()
    for name in ("flake.nix", "flake.lock"):
        (src / name).write_text((fxnix.ROOT / name).read_text())
    store = tmp_path / "store"
    proc = subprocess.run(
        [fxnix.NIX, "--extra-experimental-features", "nix-command flakes", "--store", f"local?root={store}",
         "flake", "metadata", "--json", "--offline", "--no-update-lock-file", f"path:{src}"],
        capture_output=True, text=True, timeout=60, env=fxnix.nix_env())
    assert proc.returncode == 0, proc.stderr
    meta = json.loads(proc.stdout)
    assert meta["locks"] == LOCK
    assert (src / "flake.lock").read_text() == (fxnix.ROOT / "flake.lock").read_text()
