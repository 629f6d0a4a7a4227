"""Every .nix file of the repository parses (Debian's Nix 2.8)."""

from __future__ import annotations

import pytest

import fxnix

pytestmark = [pytest.mark.unit, fxnix.needs_nix]

NIX_FILES = sorted(
    p for p in fxnix.ROOT.rglob("*.nix")
    if not any(part in {".git", ".venv", "node_modules", ".fxstack"} for part in p.relative_to(fxnix.ROOT).parts)
)


def test_the_flake_and_nix_dir_are_found():
    names = {str(p.relative_to(fxnix.ROOT)) for p in NIX_FILES}
    assert {"flake.nix", "nix/specs.nix", "nix/images.nix", "nix/outputs.nix"} <= names


@pytest.mark.parametrize("path", NIX_FILES, ids=lambda p: str(p.relative_to(fxnix.ROOT)))
def test_parses(path):
    fxnix.instantiate("--parse", str(path))
