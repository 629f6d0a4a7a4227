"""The inference API through FastAPI's TestClient against a real Redis (Feast online store) and
a real MLflow server: nothing registered -> 503s that say what to do; pipeline -> predictions
with the registered version; a new version is served without a restart."""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.integration

MODEL = "fx-direction-inference-test"


@pytest.fixture(scope="module")
def env(redis_server, mlflow_server, tmp_path_factory):
    data = tmp_path_factory.mktemp("fxdata")
    prom = tmp_path_factory.mktemp("prom")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FX_DATA_DIR", str(data))
        mp.setenv("REDIS_HOST", redis_server["host"])
        mp.setenv("REDIS_PORT", str(redis_server["port"]))
        mp.setenv("MLFLOW_TRACKING_URI", mlflow_server["uri"])
        mp.setenv("FX_MODEL_NAME", MODEL)
        mp.setenv("FX_MODEL_ALIAS", "serving")
        mp.setenv("FX_PAIRS", "EUR_USD,GBP_USD,USD_JPY")
        mp.setenv("FX_MODEL_REFRESH_SECONDS", "0.2")
        mp.setenv("PROMETHEUS_MULTIPROC_DIR", str(prom))
        mp.setenv("FEAST_USAGE", "False")
        mp.delenv("OANDA_API_TOKEN", raising=False)
        mp.delenv("FEAST_REPO_PATH", raising=False)
        yield {"data": data, "mlflow": mlflow_server, "redis": redis_server}


@pytest.fixture
def client(env):
    from fastapi.testclient import TestClient

    from fxservices.inference import app as app_module

    app_module.reset_services()
    with TestClient(app_module.app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def features_ready(env):
    from fxservices.pipeline import tasks

    ingested = tasks.ingest_task()
    assert [r["source"] for r in ingested] == ["generated"] * 3
    tasks.features_task()
    return tasks.materialize_task()


@pytest.fixture(scope="module")
def model_v1(features_ready):
    from fxservices.pipeline import tasks

    return tasks.train_register_task(run_id="manual__test")


def _bad_requests(client):
    for body, field in [({}, "pair"), ({"pair": 5}, "pair"), ({"pair": "EURUSD"}, "pair"),
                        ({"pair": ""}, "pair"), ([1, 2], "body")]:
        r = client.post("/predict", json=body)
        assert r.status_code == 422, (body, r.text)
        j = r.json()
        assert j["errors"][0]["field"] == field and field in j["detail"]
        assert set(j["errors"][0]) == {"field", "reason", "accepted", "got"}
        assert "EUR_USD" in j["errors"][0]["accepted"]  # what to send instead
    r = client.post("/predict", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 422 and "JSON" in r.json()["detail"]
    # not UTF-8: FastAPI's own answer is a bare 400; the kit's is the 422 every bad body gets
    r = client.post("/predict", content=b'{"pair": "\xff\xfe"}', headers={"content-type": "application/json"})
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body", r.text
    r = client.post("/predict", content=b"pair=EUR_USD",
                    headers={"content-type": "application/x-www-form-urlencoded"})
    assert 400 <= r.status_code < 500
    r = client.post("/predict", json={"pair": "CHF_SEK"})
    assert r.status_code == 404
    assert "unknown pair CHF_SEK" in r.json()["detail"] and "EUR_USD" in r.json()["detail"]
    r = client.get("/predict")
    assert r.status_code == 405


def test_before_the_pipeline_ran(client):
    assert client.get("/health").json() == {"status": "ok"}
    r = client.get("/ready")
    assert r.status_code == 503
    j = r.json()
    assert j["ready"] is False and len(j["missing"]) == 2
    model_msg, feat_msg = j["missing"]
    assert model_msg.startswith("model:") and MODEL in model_msg and "fx_pipeline" in model_msg
    assert feat_msg.startswith("features:") and "registry" in feat_msg
    assert "fx_pipeline" in feat_msg

    r = client.post("/predict", json={"pair": "EUR_USD"})
    assert r.status_code == 503
    assert r.json()["missing"] == "model"
    assert "alias 'serving'" in r.json()["detail"] and "fx_pipeline" in r.json()["detail"]
    _bad_requests(client)


def test_features_but_no_model_yet(client, features_ready):
    assert set(features_ready["latest"]) == {"EUR_USD", "GBP_USD", "USD_JPY"}
    r = client.get("/ready")
    assert r.status_code == 503
    assert [m.split(":")[0] for m in r.json()["missing"]] == ["model"]
    assert r.json()["checks"]["features"]["feature_view"] == "fx_market_features"
    r = client.post("/predict", json={"pair": "GBP_USD"})
    assert r.status_code == 503 and r.json()["missing"] == "model"


def test_predict_serves_the_registered_model(client, env, model_v1):
    import mlflow
    import mlflow.xgboost
    import numpy as np
    import pandas as pd

    from fxservices.pipeline.features import FEATURE_NAMES, offline_path

    assert model_v1["model_name"] == MODEL and model_v1["alias"] == "serving"
    mv = mlflow.MlflowClient(env["mlflow"]["uri"]).get_model_version_by_alias(MODEL, "serving")
    assert str(mv.version) == model_v1["version"]

    r = client.get("/ready")
    assert r.status_code == 200, r.text
    assert r.json()["checks"]["model"]["version"] == model_v1["version"]

    offline = pd.read_parquet(offline_path(env["data"]))
    for pair in ("EUR_USD", "GBP_USD", "USD_JPY"):
        r = client.post("/predict", json={"pair": pair.lower()})
        assert r.status_code == 200, r.text
        j = r.json()
        assert j["pair"] == pair and j["model_name"] == MODEL
        assert j["model_version"] == model_v1["version"] and j["model_alias"] == "serving"
        last = offline[offline["pair"] == pair].sort_values("event_timestamp").iloc[-1]
        assert pd.Timestamp(j["feature_timestamp"]) == last["event_timestamp"]
        for name in FEATURE_NAMES:
            assert j["features"][name] == pytest.approx(last[name], rel=1e-12)
        # the same model, loaded independently from the registry, gives the same answer
        mlflow.set_tracking_uri(env["mlflow"]["uri"])
        ref = mlflow.xgboost.load_model(f"models:/{MODEL}/{model_v1['version']}")
        x = pd.DataFrame([[last[n] for n in FEATURE_NAMES]], columns=list(FEATURE_NAMES))
        p_up = float(ref.predict_proba(x)[0, 1])
        assert j["probability_up"] == pytest.approx(p_up, abs=1e-6)
        assert j["prediction"] == ("up" if p_up >= 0.5 else "down")
        assert j["probability"] == pytest.approx(max(p_up, 1 - p_up), abs=1e-6)
        assert 0.5 <= j["probability"] <= 1.0 and np.isfinite(j["probability"])
    _bad_requests(client)  # still 4xx, never 500, with a model loaded


def test_a_new_version_is_served_without_restart(client, env, model_v1):
    from fxservices.pipeline import tasks

    r = client.post("/predict", json={"pair": "EUR_USD"})
    assert r.json()["model_version"] == model_v1["version"]
    v2 = tasks.train_register_task()
    assert int(v2["version"]) == int(model_v1["version"]) + 1
    deadline = time.monotonic() + 10
    while True:
        r = client.post("/predict", json={"pair": "EUR_USD"})
        assert r.status_code == 200
        if r.json()["model_version"] == v2["version"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert r.json()["model_version"] == v2["version"]
    metrics = client.get("/metrics").text
    assert (f'fx_model_version_served{{alias="serving",model="{MODEL}"}} '
            f'{float(v2["version"])}') in metrics


def test_metrics_count_requests_per_route(client, model_v1):
    def count(text, route, status):
        key = f'fx_api_requests_total{{method="POST",route="{route}",status="{status}"}} '
        for line in text.splitlines():
            if line.startswith(key):
                return float(line.split()[-1])
        return 0.0

    before = client.get("/metrics").text
    for _ in range(3):
        assert client.post("/predict", json={"pair": "USD_JPY"}).status_code == 200
    client.post("/predict", json={"pair": "XXX_YYY"})
    client.post("/predict", json={})
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    after = r.text
    assert count(after, "/predict", 200) - count(before, "/predict", 200) == 3
    assert count(after, "/predict", 404) - count(before, "/predict", 404) == 1
    assert count(after, "/predict", 422) - count(before, "/predict", 422) == 1
    assert 'fx_api_request_duration_seconds_bucket{le="0.02",method="POST",route="/predict"}' \
        in after
    assert 'fx_predictions_total{pair="USD_JPY",prediction=' in after


def test_body_limit_under_a_real_server(env, model_v1):
    """uvicorn on 127.0.0.1: a 1 MB body is 413 (declared or streamed); one under the limit is
    served. Unknown fields are ignored, so without the limit the 1 MB body would be a 200."""
    import json

    from fxservices.inference import app as app_module

    from .conftest import post_json, uvicorn_thread

    app_module.reset_services()
    big = json.dumps({"pair": "EUR_USD", "padding": "x" * 1024 * 1024}).encode()
    small = json.dumps({"pair": "EUR_USD", "padding": "x" * 60_000}).encode()
    with uvicorn_thread(app_module.app) as port:
        status, answer = post_json(port, "/predict", big)
        assert status == 413, answer
        assert answer["errors"][0]["field"] == "body"
        assert "FX_MAX_BODY_BYTES" in answer["detail"]
        status, answer = post_json(port, "/predict",
                                   (big[i:i + 16384] for i in range(0, len(big), 16384)),
                                   chunked=True)
        assert status == 413, answer
        for chunked in (False, True):
            status, answer = post_json(port, "/predict", [small] if chunked else small,
                                       chunked=chunked)
            assert status == 200, answer
            assert answer["pair"] == "EUR_USD" and int(answer["model_version"]) >= 1


def test_feature_store_down_is_a_503(env, model_v1, monkeypatch):
    from fastapi.testclient import TestClient

    from fxservices.inference import app as app_module

    from .conftest import free_port

    monkeypatch.setenv("REDIS_PORT", str(free_port()))  # nothing listens there
    app_module.reset_services()
    with TestClient(app_module.app, raise_server_exceptions=False) as c:
        r = c.get("/ready")
        assert r.status_code == 503
        assert any("Redis" in m for m in r.json()["missing"])
        r = c.post("/predict", json={"pair": "EUR_USD"})
        assert r.status_code == 503 and r.json()["missing"] == "features"
        assert "Redis" in r.json()["detail"]


def test_mlflow_down_is_a_quick_503(env, features_ready, monkeypatch):
    from fastapi.testclient import TestClient

    from fxservices.inference import app as app_module

    from .conftest import free_port

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")
    app_module.reset_services()
    with TestClient(app_module.app, raise_server_exceptions=False) as c:
        t0 = time.monotonic()
        r = c.post("/predict", json={"pair": "EUR_USD"})
        assert r.status_code == 503 and "cannot be reached" in r.json()["detail"]
        assert time.monotonic() - t0 < 10


def test_bad_configuration_is_a_503_naming_the_variable(env, monkeypatch):
    from fastapi.testclient import TestClient

    from fxservices.inference import app as app_module

    monkeypatch.setenv("REDIS_PORT", "six-three-seven-nine")
    app_module.reset_services()
    with TestClient(app_module.app, raise_server_exceptions=False) as c:
        assert c.get("/health").status_code == 200  # the process is up all the same
        r = c.get("/ready")
        assert r.status_code == 503 and "REDIS_PORT='six-three-seven-nine'" in r.json()["detail"]
        r = c.post("/predict", json={"pair": "EUR_USD"})
        assert r.status_code == 503 and "REDIS_PORT" in r.json()["detail"]


def test_configured_pair_without_online_features_is_a_503(env, model_v1, monkeypatch):
    from fastapi.testclient import TestClient

    from fxservices.inference import app as app_module

    monkeypatch.setenv("FX_PAIRS", "EUR_USD,AUD_USD")  # AUD_USD was never ingested
    app_module.reset_services()
    with TestClient(app_module.app, raise_server_exceptions=False) as c:
        r = c.post("/predict", json={"pair": "AUD_USD"})
        assert r.status_code == 503 and r.json()["missing"] == "features"
        assert "no online features for pair AUD_USD" in r.json()["detail"]
        assert "fx_pipeline" in r.json()["detail"]
        assert c.post("/predict", json={"pair": "EUR_USD"}).status_code == 200


def test_a_hanging_registry_never_holds_up_requests(env, model_v1, caplog):
    """The alias check runs in the background: while MLflow hangs (a listener that never
    answers), requests keep getting the loaded model, and one check at a time is made."""
    import socket
    import threading

    from mlflow import MlflowClient

    from fxservices.inference.model import ModelCache

    cache = ModelCache(env["mlflow"]["uri"], MODEL, "serving", ttl_seconds=0.05)
    loaded = cache.get()
    assert int(loaded.version) >= int(model_v1["version"])
    with socket.socket() as hole:
        hole.bind(("127.0.0.1", 0))
        hole.listen(16)  # the kernel completes the handshake; nobody ever answers
        cache._client = MlflowClient(tracking_uri=f"http://127.0.0.1:{hole.getsockname()[1]}")
        time.sleep(0.06)
        assert cache.serve() is loaded  # the check is due: it starts, the call does not wait
        checks = [t for t in threading.enumerate() if t.name == "fx-model-check"]
        assert len(checks) == 1 and checks[0].is_alive()
        for _ in range(200):  # all answered from the loaded model while the check hangs
            assert cache.serve() is loaded
        assert checks[0].is_alive()
        assert len([t for t in threading.enumerate() if t.name == "fx-model-check"]) == 1
        checks[0].join(timeout=30)  # MLFLOW_HTTP_REQUEST_TIMEOUT
    assert not checks[0].is_alive()
    assert cache.serve() is loaded  # an unreachable registry keeps the version being served
    assert "cannot be reached" in (cache._error or "")


def test_a_background_swap_loads_with_a_short_gil_switch_interval(env, model_v1):
    """A new version loads beside requests: meanwhile the GIL is handed back every 0.5 ms so
    the event loop is not kept waiting 5 ms at each socket call; afterwards it is as before."""
    import sys
    import threading

    from fxservices.inference.model import ModelCache
    from fxservices.pipeline import tasks

    from .conftest import switch_interval_at_rest

    cache = ModelCache(env["mlflow"]["uri"], MODEL, "serving", ttl_seconds=0.05)
    first = cache.get()
    before = switch_interval_at_rest()
    seen = []
    cache.on_new_model = lambda: seen.append(sys.getswitchinterval())
    newer = tasks.train_register_task()
    time.sleep(0.06)
    assert cache.serve() is first  # answered at once; the check and the load run behind it
    for check in [t for t in threading.enumerate() if t.name == "fx-model-check"]:
        check.join(timeout=60)
    # Read before any further serve(): with a 50 ms TTL that call would start the next check,
    # whose polite interval this assertion would then see. (Another test's cache still polling in
    # this process may be in a section of its own: the interval is read when none is.)
    assert switch_interval_at_rest() == before
    assert cache.loaded.version == newer["version"] != first.version
    assert seen == [0.0005]


def test_a_worker_with_no_model_loads_the_first_version_on_its_own(env, model_v1):
    """No request needed: the worker's background poll keeps asking the registry while nothing
    is registered, and loads a version once one is. Every alias check the poll makes is seen
    (the real ModelCache, its checks reported through a queue): no sleep decides anything."""
    import queue
    import threading

    from mlflow import MlflowClient

    from fxservices.inference.model import ModelCache, ModelUnavailable

    checks: queue.Queue = queue.Queue()

    class ObservedCache(ModelCache):
        def refresh(self):
            super().refresh()
            checks.put((threading.current_thread().name, self.loaded, self._error))

    name = f"fx-poll-{time.time_ns()}"
    cache = ObservedCache(env["mlflow"]["uri"], name, "serving", ttl_seconds=0.1)
    with pytest.raises(ModelUnavailable):
        cache.get()
    assert checks.get_nowait()[0] == threading.current_thread().name
    poller = threading.Thread(target=cache.poll_until_loaded, name="fx-poll", daemon=True)
    poller.start()
    for _ in range(2):  # the poll asks again and again, and the registry says "none"
        thread, loaded, error = checks.get(timeout=30)
        assert thread == "fx-poll" and loaded is None
        assert f"no version of model '{name}' carries the alias 'serving'" in error
    assert poller.is_alive()
    client = MlflowClient(tracking_uri=env["mlflow"]["uri"])
    source = client.get_model_version(MODEL, model_v1["version"])
    client.create_registered_model(name)
    mv = client.create_model_version(name, source.source, run_id=source.run_id)
    client.set_registered_model_alias(name, "serving", mv.version)
    while True:  # checks that ran before the alias was set still say "none"
        thread, loaded, _ = checks.get(timeout=30)
        assert thread == "fx-poll"
        if loaded is not None:
            break
    assert loaded.version == str(mv.version)
    poller.join(timeout=30)
    assert not poller.is_alive() and cache.loaded is loaded  # the poll ends once loaded


def test_a_worker_reads_every_pair_before_it_serves_a_new_model(client, env, model_v1):
    """The first-model window: a worker prepares a version in the thread that loaded it,
    before any request is served with it (features of every pair read into its cache, one
    prediction run), so the first requests after the first model never queue behind Feast's
    first read in that worker. The model is published only after that, so this holds the
    moment it is loaded."""
    from fxstack.poll import poll

    from fxservices.inference import app as app_module

    poll(lambda: app_module.services.models and app_module.services.models.loaded,
         timeout=60, interval=0.05)
    cache = app_module._predict_cache()
    assert set(cache.features) == {"EUR_USD", "GBP_USD", "USD_JPY"} and not cache.reading
    r = client.post("/predict", json={"pair": "GBP_USD"})
    assert r.status_code == 200 and r.json()["features"] == {
        k: float(v) for k, v in cache.features["GBP_USD"][1].items() if v is not None}
