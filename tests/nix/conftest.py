from __future__ import annotations

import pytest

import fxnix


@pytest.fixture(scope="session")
def snapshot(tmp_path_factory):
    """One copy of what the flake reads, taken once: the baseline and every edited copy come from
    it, so files changing in the working tree during the run cannot show up as differences."""
    return fxnix.copy_repo(tmp_path_factory.mktemp("snapshot") / "repo")


@pytest.fixture(scope="session")
def flake(snapshot) -> fxnix.Flake:
    if fxnix.NIX_INSTANTIATE is None:
        pytest.skip(fxnix.SKIP_REASON)
    return fxnix.evaluate_flake(snapshot)


@pytest.fixture(scope="session")
def specs(snapshot) -> dict:
    """The Python loader's resolved specs (the reference both paths follow)."""
    return fxnix.python_specs(snapshot)


@pytest.fixture()
def repo_copy(tmp_path, snapshot):
    """A copy of the snapshot, to edit."""
    return fxnix.copy_repo(tmp_path / "repo", snapshot)
