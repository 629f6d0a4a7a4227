"""A failing service is reported with its health-check output and its last 30 log lines.

Real containers (labelled as a Compose project of their own), real health checks, the harness's
own wait loop. Needs dockerd and one of the stack's service images (for bash).
"""

from __future__ import annotations

import io
import uuid

import pytest

from fxstack.errors import FxError
from fxstack.stack import lifecycle
from fxstack.stack.compose import images_env_file
from fxstack.stack.target import Target
from fxstack.stacks.fx import FX
from fxstack.envfile import read_env

pytestmark = pytest.mark.integration

NS = 1_000_000_000


@pytest.fixture
def project(docker_client):
    name = f"fxstack-fail-{uuid.uuid4().hex[:8]}"
    yield name
    for c in docker_client.containers.list(all=True, filters={"label": f"com.docker.compose.project={name}"}):
        c.remove(force=True, v=True)


def target(project):
    return Target(FX, project=project)


@pytest.fixture
def bash_image(docker_client):
    from docker.errors import ImageNotFound

    refs = read_env(images_env_file())
    for var in ("REDIS_IMAGE", "POSTGRES_IMAGE", "PROMETHEUS_IMAGE"):
        if refs.get(var):
            try:
                docker_client.images.get(refs[var])
                return refs[var]
            except ImageNotFound:
                continue
    pytest.skip("no stack service image loaded yet (run `fxstack build`)")


def start(docker_client, project, image, service, script, healthcheck=None):
    return docker_client.containers.run(
        image, ["bash", "-c", script], entrypoint=[], detach=True, user="0",
        name=f"{project}-{service}-1", healthcheck=healthcheck,
        labels={"com.docker.compose.project": project, "com.docker.compose.service": service,
                "com.docker.compose.oneoff": "False"})


def test_unhealthy_service_shows_health_output_and_last_30_log_lines(docker_client, project, bash_image):
    start(docker_client, project, bash_image, "broken",
          "for i in $(seq 1 45); do echo log-line-$i; done; sleep 300",
          healthcheck={"test": ["CMD", "bash", "-c", "echo probe-says-no; exit 1"],
                       "interval": 1 * NS, "timeout": 2 * NS, "retries": 2, "start_period": 0})
    with pytest.raises(FxError) as err:
        lifecycle.wait_healthy(docker_client, target(project), ["broken"], set(), timeout=60, out=io.StringIO())
    text = str(err.value)
    assert "broken" in text and "unhealthy" in text
    assert "probe-says-no" in text
    assert "log-line-45" in text and "log-line-16" in text
    assert "log-line-15\n" not in text + "\n"  # only the last 30 lines
    assert "fxstack logs broken" in text


def test_failed_one_shot_is_reported_with_its_exit_code_and_log(docker_client, project, bash_image):
    start(docker_client, project, bash_image, "init", "echo migrating; echo 'fatal: no database' >&2; exit 3")
    with pytest.raises(FxError) as err:
        lifecycle.wait_healthy(docker_client, target(project), ["init"], {"init"}, timeout=60, out=io.StringIO())
    text = str(err.value)
    assert "exited with code 3" in text and "fatal: no database" in text


def test_crash_looping_service_is_reported(docker_client, project, bash_image):
    c = docker_client.containers.run(
        bash_image, ["bash", "-c", "echo crashing now; exit 1"], entrypoint=[], detach=True, user="0",
        name=f"{project}-crashy-1", restart_policy={"Name": "always"},
        labels={"com.docker.compose.project": project, "com.docker.compose.service": "crashy",
                "com.docker.compose.oneoff": "False"})
    assert c
    with pytest.raises(FxError) as err:
        lifecycle.wait_healthy(docker_client, target(project), ["crashy"], set(), timeout=120, out=io.StringIO())
    text = str(err.value)
    assert "crashy" in text and ("keeps crashing" in text or "did not come back" in text)
    assert "crashing now" in text
