"""Two clean builds, in different directories with empty caches, give identical digests."""

import pytest

from fxstack.image.builder import Builder

QUICK = ["fx-base", "redis"]


def clean_build(tmp_path, name, images):
    state = tmp_path / name / "nested" / "state"   # different depth: no host path may leak in
    return {im.name: im for im in Builder(state=state, log=lambda m: None).build(images)}


def compare(a, b):
    for name in a:
        assert [l.digest for l in a[name].layers] == [l.digest for l in b[name].layers], name
        assert a[name].manifest_digest == b[name].manifest_digest, name


@pytest.mark.integration
def test_two_clean_builds_identical(tmp_path):
    compare(clean_build(tmp_path, "one", QUICK), clean_build(tmp_path, "two", QUICK))


@pytest.mark.slow
def test_two_clean_builds_identical_whole_cpu_set(tmp_path):
    compare(clean_build(tmp_path, "one", None), clean_build(tmp_path, "two", None))
