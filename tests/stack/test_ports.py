"""Port-conflict detection against real sockets on 127.0.0.1."""

from __future__ import annotations

import socket

import pytest

from fxstack.stack.compose import PublishedPort, published_ports
from fxstack.stack.target import Target
from fxstack.stacks.fx import FX
from fxstack.stack.docker_state import (describe_conflicts, free_port, port_conflicts,
                                          port_in_use)

pytestmark = pytest.mark.unit
# The tests that hold a listening socket on 127.0.0.1 are integration tests (a server, however small).
real_listener = pytest.mark.integration


@pytest.fixture
def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    yield s.getsockname()[1]
    s.close()


@real_listener
def test_a_listening_socket_is_detected(listener):
    assert port_in_use("127.0.0.1", listener)


def test_a_free_port_is_not_reported():
    assert not port_in_use("127.0.0.1", free_port())


@real_listener
def test_conflict_names_service_port_and_variable(listener):
    ports = [PublishedPort("fastapi", "127.0.0.1", "FX_API_PORT", 8000, 8000),
             PublishedPort("mlflow", "127.0.0.1", "FX_MLFLOW_PORT", 5000, 5000)]
    env = {"FX_API_PORT": str(listener), "FX_MLFLOW_PORT": str(free_port())}
    conflicts = port_conflicts(ports, env)
    assert [(p.service, n) for p, n in conflicts] == [("fastapi", listener)]
    text = describe_conflicts(conflicts)
    assert f"127.0.0.1:{listener}" in text and "fastapi" in text and "FX_API_PORT" in text


@real_listener
def test_ports_held_by_our_own_running_stack_are_not_conflicts(listener):
    ports = [PublishedPort("fastapi", "127.0.0.1", "FX_API_PORT", 8000, 8000)]
    assert port_conflicts(ports, {"FX_API_PORT": str(listener)}, ours={listener}) == []


@real_listener
def test_default_used_when_variable_unset(listener):
    ports = [PublishedPort("fastapi", "127.0.0.1", "FX_API_PORT", listener, 8000)]
    assert port_conflicts(ports, {}) and port_conflicts(ports, {"FX_API_PORT": ""})


def test_compose_file_ports_are_all_overridable_and_named():
    ports = published_ports(Target(FX, variants=("gpu",)).files, profiles=("monitoring-ui",))
    by_service = {p.service: p for p in ports}
    assert set(by_service) == {"airflow-webserver", "mlflow", "fastapi", "prometheus", "grafana", "fingpt"}
    assert {p.var for p in ports} == {"FX_AIRFLOW_PORT", "FX_MLFLOW_PORT", "FX_API_PORT",
                                      "FX_PROMETHEUS_PORT", "FX_GRAFANA_PORT", "FX_FINGPT_PORT"}
    assert by_service["fastapi"].default == 8000 and by_service["airflow-webserver"].default == 8080
    # without the profile, grafana is not part of the stack and its port is not checked
    assert "grafana" not in {p.service for p in published_ports(Target(FX).files, profiles=())}
