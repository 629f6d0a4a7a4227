"""fxstack.stack.settled: which services `up` leaves out of Compose's run (the decision, from
given container facts; the real Compose and Docker answer in test_stack_integration's code-change
test, where airflow-init is not run again and only fastapi is recreated)."""

from __future__ import annotations

import pytest

from fxstack.stack.settled import (Container, compose_args, mounted_files_changed, parse_hashes, restarts_dependents,
                                   settled)

pytestmark = pytest.mark.unit

SERVICES = ["postgres", "init", "api", "web"]
ONESHOTS = {"init"}
HASHES = {"postgres": "h-pg", "init": "h-init", "api": "h-api", "web": "h-web"}
IMAGES = {"postgres": "sha256:pg", "init": "sha256:air", "api": "sha256:api2", "web": "sha256:web"}


def running(svc: str, health: str = "healthy", **kw) -> Container:
    facts = dict(service=svc, state="running", health=health, exit_code=None, config_hash=HASHES[svc],
                 image_id=IMAGES[svc])
    return Container(**{**facts, **kw})


def exited(svc: str, code: int = 0, **kw) -> Container:
    return Container(**{**running(svc).__dict__, "state": "exited", "health": "none", "exit_code": code, **kw})


def test_a_code_change_leaves_compose_only_the_changed_service():
    containers = [running("postgres"), exited("init"), running("api", image_id="sha256:api1",
                                                                   config_hash="h-api-old"), running("web", "none")]
    done = settled(SERVICES, ONESHOTS, HASHES, IMAGES, containers)
    assert done == {"postgres", "init", "web"}
    assert compose_args(SERVICES, ONESHOTS, done) == ["--no-deps", "api"]


def test_the_first_up_gives_compose_the_whole_stack():
    assert settled(SERVICES, ONESHOTS, HASHES, IMAGES, []) == set()
    assert compose_args(SERVICES, ONESHOTS, set()) == []


@pytest.mark.parametrize("container, why", [
    (exited("init", 1), "a one-shot that failed runs again"),
    (exited("init", config_hash="h-init-old"), "a one-shot whose configuration changed runs again"),
    (exited("init", image_id="sha256:air-old"), "a one-shot whose image changed runs again"),
    (exited("init", inputs_changed=True), "a one-shot whose secret file changed runs again"),
    (running("init"), "a one-shot still running is Compose's to wait for"),
    (running("postgres", "starting"), "a service not healthy yet is Compose's to wait for"),
    (running("postgres", "unhealthy"), "an unhealthy service is Compose's (and the wait's) to report"),
    (exited("postgres", 0), "a long-running service that exited is started again"),
    (running("web", config_hash=None), "a container without Compose's hash is not known to be current"),
])
def test_what_compose_still_does(container, why):
    others = [c for c in (running("postgres"), exited("init"), running("api"), running("web"))
              if c.service != container.service]
    done = settled(SERVICES, ONESHOTS, HASHES, IMAGES, others + [container])
    assert container.service not in done, why
    assert container.service in compose_args(SERVICES, ONESHOTS, done), why


def test_an_image_docker_no_longer_has_or_a_second_container_is_not_settled():
    containers = [running("postgres"), running("postgres"), exited("init"), running("api"), running("web")]
    assert settled(SERVICES, ONESHOTS, HASHES, {**IMAGES, "api": None}, containers) == {"init", "web"}


def test_nothing_changed_names_the_long_running_services():
    containers = [running("postgres"), exited("init"), running("api"), running("web")]
    done = settled(SERVICES, ONESHOTS, HASHES, IMAGES, containers)
    assert done == set(SERVICES)
    # Compose finds nothing to do for them (and removes orphans); the one-shot is not run again
    assert compose_args(SERVICES, ONESHOTS, done) == ["--no-deps", "postgres", "api", "web"]


def test_compose_hash_output_is_read_per_service():
    text = "airflow-init 7be60e65\nfastapi 48377c92\n\n"
    assert parse_hashes(text) == {"airflow-init": "7be60e65", "fastapi": "48377c92"}


def test_a_service_restarted_with_its_dependency_leaves_the_whole_run_to_compose():
    plain = {"services": {"api": {"depends_on": {"postgres": {"condition": "service_healthy", "required": True,
                                                               "restart": False}}}, "postgres": {}}}
    assert not restarts_dependents(plain)
    plain["services"]["api"]["depends_on"]["postgres"]["restart"] = True
    assert restarts_dependents(plain)


def test_a_file_written_after_the_container_started_counts_as_changed(tmp_path):
    import os

    secret = tmp_path / "airflow_admin_password"
    secret.write_text("s3cret")
    os.utime(secret, (1_700_000_000, 1_700_000_000))  # 2023-11-14T22:13:20Z
    mounts = [{"Type": "bind", "Source": str(secret), "Destination": "/run/secrets/x"},
              {"Type": "volume", "Source": "/nonexistent", "Destination": "/data"}]
    assert not mounted_files_changed(mounts, "2023-11-14T22:13:20.500000000Z")
    assert mounted_files_changed(mounts, "2023-11-14T22:13:19.500000000Z")
    assert mounted_files_changed(mounts, "not a time")
    assert not mounted_files_changed([], "2023-11-14T22:13:19Z")
