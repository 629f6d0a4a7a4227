"""The load balancer `deploy swarm` puts in front of the API, for real: our HAProxy image with the
configuration the renderer writes, finding its backends through Docker's embedded DNS the way it
does on Swarm (`tasks.<service>` names every task: here, network aliases), health-checking them,
and retrying a request whose backend went away. No request may fail while a backend leaves and
another one joins."""

from __future__ import annotations

import time

import pytest
import requests

from fxstack.cluster import swarm
from fxstack.stack.docker_state import free_port

from .backend import BACKEND
from .stack_models import model

pytestmark = pytest.mark.integration



@pytest.fixture(scope="module")
def images(docker_client):
    from fxstack.image.builder import Builder
    from fxstack.load.loader import load_images

    builder = Builder()
    built = {im.name: im for im in builder.build(["fx-base", "haproxy"])}
    load_images(builder, list(built.values()))
    return built


def backend(client, images, network, name):
    c = client.containers.run(images["fx-base"].ref, ["python3", "-c", BACKEND], detach=True, name=name,
                              environment={"NAME": name}, read_only=True, cap_drop=["ALL"], network=None)
    network.connect(c, aliases=["tasks.fastapi", name])
    return c


def test_lb_keeps_every_request_while_backends_come_and_go(docker_client, images, tmp_path):
    suffix = f"{int(time.time())}"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(swarm.haproxy_config(model("fx"), swarm.SwarmOptions()))
    cfg.chmod(0o644)
    network = docker_client.networks.create(f"fxlb-{suffix}", driver="bridge")
    started = []
    try:
        started += [backend(docker_client, images, network, f"fxlb-{suffix}-{i}") for i in (1, 2)]
        port = free_port()
        lb = docker_client.containers.run(
            images["haproxy"].ref, ["-W", "-db", "-f", swarm.LB_CONFIG_TARGET], detach=True, name=f"fxlb-{suffix}-lb",
            network=network.name, read_only=True, cap_drop=["ALL"], security_opt=["no-new-privileges:true"],
            tmpfs={"/tmp": "size=16m"}, ports={f"{swarm.LB_PORT}/tcp": ("127.0.0.1", port)},
            volumes={str(cfg): {"bind": swarm.LB_CONFIG_TARGET, "mode": "ro"}})
        started.append(lb)
        url = f"http://127.0.0.1:{port}/"

        def seen(n: int, deadline: float = 30) -> set[str]:
            names: set[str] = set()
            end = time.monotonic() + deadline
            while time.monotonic() < end and len(names) < n:
                try:
                    r = requests.get(url, timeout=3)
                    if r.status_code == 200:
                        names.add(r.text)
                except requests.RequestException:
                    pass
                time.sleep(0.05)
            return names

        assert len(seen(2)) == 2, lb.logs().decode()[-2000:]
        assert requests.get(f"http://127.0.0.1:{port}{swarm.LB_HEALTH}", timeout=3).status_code == 200

        # a client at 20 requests/s while one backend stops and a third one joins
        failures, served = 0, set()
        third = None
        t0 = time.monotonic()
        for i in range(200):
            if i == 20:
                started[0].stop(timeout=2)
            if i == 60:
                third = backend(docker_client, images, network, f"fxlb-{suffix}-3")
                started.append(third)
            try:
                r = requests.get(url, timeout=10)
                failures += r.status_code != 200
                served.add(r.text)
            except requests.RequestException:
                failures += 1
            time.sleep(max(0, t0 + (i + 1) / 20 - time.monotonic()))
        assert failures == 0, lb.logs().decode()[-3000:]
        assert f"fxlb-{suffix}-3" in served, "a task that joins is found through DNS"
    finally:
        for c in reversed(started):
            c.remove(force=True, v=True)
        network.remove()
