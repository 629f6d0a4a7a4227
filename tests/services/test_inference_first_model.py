"""The first-model window: a worker that has no model yet answers 503 at once, never holding
a request while the first version loads, and /ready speaks for every worker.

Real MLflow server and the real app (TestClient); the load is held open with an Event, so
"at once" is decided by whether the request returns while the load is still held, not by a
clock or a sleep."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from fxstack.poll import poll

pytestmark = pytest.mark.integration


@pytest.fixture
def app_env(redis_server, mlflow_server, tmp_path, monkeypatch):
    name = f"fx-first-model-{time.time_ns()}"
    for key, value in {"FX_DATA_DIR": str(tmp_path / "data"), "REDIS_HOST": redis_server["host"],
                       "REDIS_PORT": str(redis_server["port"]), "MLFLOW_TRACKING_URI": mlflow_server["uri"],
                       "FX_MODEL_NAME": name, "FX_MODEL_ALIAS": "serving", "FX_PAIRS": "EUR_USD",
                       "FX_MODEL_REFRESH_SECONDS": "0.2", "FEAST_USAGE": "False",
                       "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom")}.items():
        monkeypatch.setenv(key, value)
    (tmp_path / "prom").mkdir()
    monkeypatch.delenv("FEAST_REPO_PATH", raising=False)
    monkeypatch.delenv("FX_API_WORKERS", raising=False)
    from fxservices.inference import workers

    monkeypatch.setattr(workers, "BASE_DIR", tmp_path / "workers")
    return {"name": name, "uri": mlflow_server["uri"]}


def register_tiny_model(uri: str, name: str) -> str:
    """A real XGBoost classifier logged and registered through the MLflow server; the alias
    'serving' set on it. Returns the version."""
    import mlflow
    import mlflow.xgboost
    import numpy as np
    import xgboost as xgb

    from fxservices.feature_repo.definitions import FEATURE_NAMES

    rng = np.random.default_rng(7)
    x = rng.random((64, len(FEATURE_NAMES)))
    model = xgb.XGBClassifier(n_estimators=3, max_depth=2).fit(x, (x[:, 0] > 0.5).astype(int))
    model.get_booster().feature_names = list(FEATURE_NAMES)
    mlflow.set_tracking_uri(uri)
    with mlflow.start_run():
        info = mlflow.xgboost.log_model(model, "model", registered_model_name=name)
    version = str(info.registered_model_version)
    mlflow.MlflowClient(tracking_uri=uri).set_registered_model_alias(name, "serving", version)
    return version


def test_a_worker_without_a_model_answers_503_while_the_first_version_loads(app_env):
    from fastapi.testclient import TestClient

    from fxservices.inference import app as app_module

    app_module.reset_services()
    with TestClient(app_module.app, raise_server_exceptions=False) as c:
        r = c.get("/ready")  # this worker's check has run: nothing registered
        assert r.status_code == 503 and "no version of model" in r.json()["missing"][0]
        # fx-fastapi's health check on Swarm (entry_probe) reads /ready's words: a task that waits
        # for something outside it is healthy (kept), one still warming up is not (not in DNS yet)
        assert not warming(r.json()["missing"]), r.json()
        models = app_module.services.models
        started, release = threading.Event(), threading.Event()
        real_load = models._load

        def held_load(*args):
            started.set()
            assert release.wait(60)
            return real_load(*args)

        models._load = held_load
        version = register_tiny_model(app_env["uri"], app_env["name"])
        assert started.wait(30), "the worker's background poll did not start loading the new version"

        answers = []
        client_thread = threading.Thread(
            target=lambda: answers.extend(c.post("/predict", json={"pair": "EUR_USD"}) for _ in range(20)))
        client_thread.start()
        client_thread.join(timeout=20)
        held = client_thread.is_alive()
        release.set()  # let the load finish whatever happened, so nothing hangs
        assert not held, "a request waited for the model load"
        assert [a.status_code for a in answers] == [503] * 20
        assert {a.json()["missing"] for a in answers} == {"model"}

        def served():
            body = c.post("/predict", json={"pair": "EUR_USD"}).json()
            return body if body.get("missing") != "model" else None

        # the model is served now (no features were materialized: the next thing missing)
        assert poll(served, timeout=30, interval=0.1)["missing"] == "features"
        checks = c.get("/ready").json()["checks"]
        assert checks["model"]["version"] == version
        assert checks["workers"] == {str(os.getpid()): version}
        # a second worker that has not started yet: warming (the first check of a worker that
        # has started is tests/cluster/test_swarm.py's, with the model cache's own words)
        os.environ["FX_API_WORKERS"] = "2"
        try:
            missing = c.get("/ready").json()["missing"]
            assert warming(missing) and "not every worker serves" in missing[0], missing
        finally:
            del os.environ["FX_API_WORKERS"]


def warming(missing: list[str]) -> bool:
    """Whether fx-fastapi's Swarm health check reads these words of /ready as a task warming up."""
    from fxstack.cluster.swarm import WARMING

    return any(marker in m for m in missing for marker in WARMING["fx"])


def test_ready_counts_every_worker(app_env, monkeypatch):
    """workers.lagging: a worker that serves nothing or an older version, or one that has not
    started, keeps /ready at 503; files of exited workers are not counted."""
    from fxservices.inference import workers

    workers.record(None)
    assert workers.lagging("3") == [f"worker {os.getpid()} serves nothing yet"]
    workers.record("3")
    assert workers.lagging("3") == []
    monkeypatch.setenv("FX_API_WORKERS", "2")
    assert workers.lagging("3") == ["1 of 2 workers not started yet"]
    # a sibling process (same parent directory) that recorded version 2 and is still alive
    code = ("import os, sys; from fxservices.inference import workers; workers.BASE_DIR = "
            "__import__('pathlib').Path(sys.argv[1]); os.getppid = lambda: int(sys.argv[2]); "
            "workers.record('2'); print(os.getpid(), flush=True); sys.stdin.read()")
    sibling = subprocess.Popen([sys.executable, "-c", code, str(workers.BASE_DIR), str(os.getppid())],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pid = int(sibling.stdout.readline())
    assert workers.lagging("3") == [f"worker {pid} serves version 2"]
    sibling.communicate("")  # it exits
    assert workers.lagging("3") == ["1 of 2 workers not started yet"]


def test_overlapping_polite_sections_restore_the_switch_interval():
    """A model load and a Feast read can overlap in two threads: the interval is 0.5 ms while
    either runs and what it was once both are done, whichever finishes first."""
    from fxservices.inference.model import polite_to_the_event_loop

    from .conftest import switch_interval_at_rest

    before = switch_interval_at_rest()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()
    seen = []

    def a():
        with polite_to_the_event_loop():
            a_in.set()
            assert b_in.wait(10)
        a_out.set()

    def b():
        assert a_in.wait(10)
        with polite_to_the_event_loop():
            b_in.set()
            assert a_out.wait(10)
            seen.append(sys.getswitchinterval())  # a has left, b still runs

    threads = [threading.Thread(target=f) for f in (a, b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    assert seen == [min(before, 0.0005)]
    assert switch_interval_at_rest() == before
