from __future__ import annotations

import pytest

import fxnix


@pytest.fixture(scope="session")
def flake() -> fxnix.Flake:
    if fxnix.NIX_INSTANTIATE is None:
        pytest.skip(fxnix.SKIP_REASON)
    return fxnix.evaluate_flake(fxnix.ROOT)


@pytest.fixture(scope="session")
def specs() -> dict:
    """The Python loader's resolved specs (the reference both paths follow)."""
    return fxnix.python_specs(fxnix.ROOT)


@pytest.fixture()
def repo_copy(tmp_path):
    """A copy of what the flake reads, to edit."""
    return fxnix.copy_repo(tmp_path / "repo")
