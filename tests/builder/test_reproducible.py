"""Two clean builds, in different directories with empty caches, give identical digests.

The two builds run at the same time (each in its own state and cache, which is what two
machines are): most of a clean build is mmdebstrap, installs and compression in processes
of their own, so on two cores the pair takes little more than one.
"""

from concurrent.futures import ThreadPoolExecutor

import pytest

from fxstack.image.builder import Builder

QUICK = ["fx-base", "redis"]


def clean_build(tmp_path, name, images):
    state = tmp_path / name / "nested" / "state"   # different depth: no host path may leak in
    # its own cache, whatever FXSTACK_CACHE says: nothing may be shared between the two
    return {im.name: im for im in Builder(state=state, cache=state / "cache", log=lambda m: None).build(images)}


def clean_pair(tmp_path, images):
    with ThreadPoolExecutor(2) as pool:
        one = pool.submit(clean_build, tmp_path, "one", images)
        two = pool.submit(clean_build, tmp_path, "two", images)
        return one.result(), two.result()


def compare(a, b):
    assert sorted(a) == sorted(b)
    for name in a:
        assert [l.digest for l in a[name].layers] == [l.digest for l in b[name].layers], name
        assert a[name].manifest_digest == b[name].manifest_digest, name


@pytest.mark.integration
def test_two_clean_builds_identical(tmp_path):
    compare(*clean_pair(tmp_path, QUICK))


@pytest.mark.slow
def test_two_clean_builds_identical_whole_cpu_set(tmp_path):
    compare(*clean_pair(tmp_path, None))
