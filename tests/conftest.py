"""Fixtures shared by every tier: the Docker daemon and the CPU images built by fxstack."""

from __future__ import annotations

import pytest


def docker_or_skip():
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:  # daemon absent: integration tests cannot run here
        pytest.skip(f"Docker daemon unreachable ({exc}); `./fx check` starts one")
    return client


@pytest.fixture(scope="session")
def docker_client():
    return docker_or_skip()


@pytest.fixture(scope="session")
def cpu_images(docker_client):
    """Every portable CPU image, built (cached layers reused) and loaded into Docker.

    Returns (builder, {name: BuiltImage}).
    """
    from fxstack.image.builder import Builder
    from fxstack.load.loader import load_images

    builder = Builder()
    images = builder.build()
    load_images(builder, images)
    return builder, {im.name: im for im in images}
