"""readiness.wait_ready: which services are asked, what a timeout says (probes given as functions;
the probes themselves run against the real stack in test_stack_integration)."""

from __future__ import annotations

import io

import pytest

from fxstack.errors import FxError
from fxstack.stack.readiness import Answer, wait_ready

pytestmark = pytest.mark.unit


def test_asks_only_published_services_until_each_is_ready():
    calls = {"mlflow": 0, "fastapi": 0}

    def mlflow(urls, settings):
        calls["mlflow"] += 1
        return Answer(True, "model registry answers")

    def api(urls, settings):
        calls["fastapi"] += 1
        return Answer(calls["fastapi"] >= 3, f"try {calls['fastapi']}")

    def never(urls, settings):
        raise AssertionError("a service that is not published is not asked")

    out = io.StringIO()
    ready = wait_ready({"mlflow": "http://m", "fastapi": "http://a"}, {}, timeout=30, out=out,
                       elapsed=lambda: 1.0, probes={"mlflow": mlflow, "fastapi": api, "airflow-webserver": never})
    assert set(ready) == {"mlflow", "fastapi"}
    assert calls == {"mlflow": 1, "fastapi": 3}  # a ready service is not asked again
    assert "fastapi ready: try 3" in out.getvalue()


def test_timeout_names_each_waiting_service_and_what_it_said_last():
    def api(urls, settings):
        return Answer(False, "registered version 3; /ready: 503 worker 12 serves nothing yet")

    def broken(urls, settings):
        raise ConnectionError("refused")  # not a probe's expected failure: propagates

    with pytest.raises(FxError) as err:
        wait_ready({"fastapi": "http://a"}, {}, timeout=1, out=io.StringIO(), elapsed=lambda: 0.0,
                   probes={"fastapi": api})
    assert "fastapi: registered version 3" in str(err.value) and "fxstack logs fastapi" in str(err.value)
    with pytest.raises(ConnectionError):
        wait_ready({"x": "http://x"}, {}, timeout=1, out=io.StringIO(), elapsed=lambda: 0.0, probes={"x": broken})
