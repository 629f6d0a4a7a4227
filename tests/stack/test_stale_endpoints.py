"""`down`'s fallback for dockerd's stale endpoints never detaches a container that exists."""

from __future__ import annotations

import pytest

from fxstack.stack import docker_state as ds

pytestmark = pytest.mark.integration


def test_a_live_containers_endpoint_is_left_alone(cpu_images, docker_client, monkeypatch):
    _, images = cpu_images
    project = "fxstack-endpoints-test"
    monkeypatch.setenv("FXSTACK_PROJECT", project)
    net = docker_client.networks.create(f"{project}_backend",
                                        labels={"com.docker.compose.project": project})
    container = docker_client.containers.run(images["redis"].ref, detach=True, network=net.name,
                                             labels={"com.docker.compose.project": project})
    try:
        assert ds.release_stale_endpoints(docker_client) == 0
        net.reload()
        assert container.id in net.attrs["Containers"]
    finally:
        container.remove(force=True)
        net.remove()
