"""fxservices.common: environment reading with errors that name the variable."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


def test_required_variable_missing_names_it(monkeypatch):
    from fxservices.common.config import ConfigError, env_str

    monkeypatch.delenv("FX_SOMETHING", raising=False)
    with pytest.raises(ConfigError, match=r"FX_SOMETHING is not set.*mount it"):
        env_str("FX_SOMETHING", required=True, hint="mount it")
    monkeypatch.setenv("FX_SOMETHING", "   ")
    with pytest.raises(ConfigError, match="FX_SOMETHING"):
        env_str("FX_SOMETHING", required=True)
    monkeypatch.setenv("FX_SOMETHING", " value ")
    assert env_str("FX_SOMETHING", required=True) == "value"


def test_typed_values_and_their_errors(monkeypatch):
    from fxservices.common.config import ConfigError, env_bool, env_float, env_int, env_list

    monkeypatch.setenv("FX_PORT", "abc")
    with pytest.raises(ConfigError, match=r"FX_PORT='abc' is not an integer"):
        env_int("FX_PORT", 1)
    monkeypatch.setenv("FX_PORT", "70000")
    with pytest.raises(ConfigError, match="FX_PORT=70000 is above the maximum 65535"):
        env_int("FX_PORT", 1, maximum=65535)
    monkeypatch.setenv("FX_PORT", "6380")
    assert env_int("FX_PORT", 1) == 6380
    monkeypatch.setenv("FX_TTL", "-1")
    with pytest.raises(ConfigError, match="FX_TTL"):
        env_float("FX_TTL", 1.0, minimum=0.0)
    monkeypatch.setenv("FX_FLAG", "maybe")
    with pytest.raises(ConfigError, match="FX_FLAG"):
        env_bool("FX_FLAG", False)
    monkeypatch.setenv("FX_FLAG", "yes")
    assert env_bool("FX_FLAG", False) is True
    monkeypatch.setenv("FX_L", " a, ,b ,")
    assert env_list("FX_L") == ("a", "b")
    monkeypatch.delenv("FX_L")
    assert env_list("FX_L", ("x",)) == ("x",)


def test_settings_defaults_follow_the_contract(monkeypatch):
    from fxservices.common.config import FxSettings

    for name in ("REDIS_HOST", "REDIS_PORT", "MLFLOW_TRACKING_URI", "FX_MODEL_NAME",
                 "FX_MODEL_ALIAS", "FEAST_REPO_PATH", "FX_DATA_DIR", "FX_PAIRS"):
        monkeypatch.delenv(name, raising=False)
    s = FxSettings.from_env()
    assert (s.redis_host, s.redis_port) == ("redis", 6379)
    assert s.mlflow_tracking_uri == "http://mlflow:5000"
    assert (s.model_name, s.model_alias) == ("fx-direction", "serving")
    assert s.pairs == ("EUR_USD", "GBP_USD", "USD_JPY")
    assert str(s.data_dir) == "/data"
    assert (s.feast_repo_path / "feature_store.yaml").is_file()
    monkeypatch.setenv("FX_PAIRS", "eur/usd, aud_usd")
    assert FxSettings.from_env().pairs == ("EUR_USD", "AUD_USD")


# ---- servicekit: the one error shape, body limit and metrics of every HTTP service ----------

def _kit_app(max_bytes=64):
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from pydantic import BaseModel

    from servicekit.problems import InputError, Problem
    from servicekit.web import install

    registry = CollectorRegistry()
    requests = Counter("kit_requests_total", "requests", ["method", "route", "status"], registry=registry)
    latency = Histogram("kit_request_seconds", "latency", ["method", "route"], registry=registry)
    app = FastAPI()

    class Body(BaseModel):
        n: int

    def n(body, scale: int = 1):
        if body.n < 0:
            raise InputError(Problem("n", "is negative", "an integer >= 0", body.n))
        return {"n": body.n * scale}

    # this module's annotations are strings (__future__), and Body is local: give FastAPI the class
    n.__annotations__ = {"body": Body, "scale": int}
    app.post("/n")(n)

    @app.get("/boom")
    def boom():
        raise RuntimeError("secret detail")

    import logging
    install(app, requests=requests, latency=latency, max_bytes=max_bytes,
            log=logging.getLogger("kit-test"), accepted={"n": "an integer"}, body_setting="KIT_MAX")
    return app, registry


def _shape(r, status):
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail", "errors"}, body
    for e in body["errors"]:
        assert set(e) == {"field", "reason", "accepted", "got"} and e["field"] in body["detail"], e
    return {e["field"]: e for e in body["errors"]}


def test_kit_one_error_shape_whoever_finds_the_error():
    from fastapi.testclient import TestClient

    app, registry = _kit_app()
    c = TestClient(app, raise_server_exceptions=False)
    assert _shape(c.post("/n", json={"n": "x"}), 422)["n"] == {  # pydantic
        "field": "n", "reason": "Input should be a valid integer, unable to parse string as an integer",
        "accepted": "an integer", "got": "x"}
    assert _shape(c.post("/n", json={"n": -2}), 422)["n"]["got"] == -2  # the service's InputError
    assert "scale" in _shape(c.post("/n?scale=z", json={"n": 1}), 422)  # a query parameter
    assert "OpenAPI" in _shape(c.post("/n?scale=z", json={"n": 1}), 422)["scale"]["accepted"]
    assert "body" in _shape(c.post("/n", content=b"\xff\xfe", headers={"content-type": "application/json"}), 422)
    assert "body" in _shape(c.post("/n", content=b"{n:", headers={"content-type": "application/json"}), 422)
    big = _shape(c.post("/n", content=b'{"n": 1' + b" " * 100 + b"}",
                        headers={"content-type": "application/json"}), 413)["body"]
    assert big["got"] == 108 and "KIT_MAX" in big["accepted"]
    r = c.get("/boom")
    assert r.status_code == 500 and r.json() == {
        "detail": "internal error: RuntimeError (the service log has the traceback)"}
    assert c.get("/nowhere").json() == {"detail": "Not Found"}
    text = __import__("prometheus_client").generate_latest(registry).decode()
    assert 'kit_requests_total{method="POST",route="/n",status="413"} 1.0' in text
    assert 'kit_requests_total{method="GET",route="unmatched",status="404"} 1.0' in text


def test_kit_documents_its_errors_in_the_openapi():
    from fastapi.testclient import TestClient

    app, _ = _kit_app()
    spec = TestClient(app).get("/openapi.json").json()
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
    post = spec["paths"]["/n"]["post"]["responses"]
    assert post["422"]["content"] == error and post["413"]["content"] == error
    assert "422" not in spec["paths"]["/boom"]["get"]["responses"]  # nothing to be invalid
    schemas = spec["components"]["schemas"]
    assert set(schemas["ErrorItem"]["required"]) == {"field", "reason", "accepted"}
    assert "HTTPValidationError" not in schemas  # FastAPI's own 422 shape is not ours


def test_kit_values_are_shortened_in_answers():
    from servicekit.problems import Problem, error_body

    body = error_body([Problem("texts", "too long", "at most 10", "x" * 500)])
    assert body["errors"][0]["got"] == "x" * 200 + "..."
    assert body["detail"] == "invalid request: texts: too long; accepted: at most 10"
