"""The API's HTTP contract without its backends: prices, batches, GraphQL, and every kind of bad
input answered with field, reason and what is accepted. (Quotes, jobs and scrapes need Postgres,
Redis and the worker: tests/bsopt/test_bsopt_stack.py runs them against the real stack.)"""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bsopt.api.main import app
from bsopt.pricing import bsm

pytestmark = pytest.mark.unit
client = TestClient(app)
ONE = {"spot": 49, "strike": 50, "years": 20 / 52, "rate": 0.05, "volatility": 0.2, "type": "call"}


def problems(r, status=422):
    assert r.status_code == status, r.text
    body = r.json()
    assert body["hint"] and body["problems"], body
    for p in body["problems"]:
        assert set(p) == {"field", "reason", "accepted", "got"}, p
    return {p["field"]: p for p in body["problems"]}


def test_one_price_with_greeks():
    r = client.post("/price", json=ONE)
    assert r.status_code == 200, r.text
    b = r.json()
    assert b["count"] == 1
    assert b["price"] == pytest.approx(2.4005, abs=1e-4) and b["delta"] == pytest.approx(0.5216, abs=1e-4)


def test_expiry_as_a_date_is_act_365_from_today():
    expiry = (date.today() + timedelta(days=73)).isoformat()
    b = client.post("/price", json={**{k: v for k, v in ONE.items() if k != "years"}, "expiry": expiry}).json()
    assert b["price"] == pytest.approx(float(bsm.price(49, 50, 73 / 365, 0.05, 0.2)), rel=1e-12)


def test_a_batch_of_10000_is_priced_elementwise():
    rng = np.random.default_rng(1)
    spot = rng.uniform(50, 150, 10_000).tolist()
    kind = ["call", "put"] * 5000
    r = client.post("/price", json={"spot": spot, "strike": 100, "years": 0.5, "rate": 0.02,
                                    "volatility": 0.25, "type": kind, "greeks": False})
    assert r.status_code == 200
    got = np.array(r.json()["price"])
    want = bsm.price(np.array(spot), 100, 0.5, 0.02, 0.25, 0.0, np.array(kind) == "call")
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_implied_volatility_endpoint_and_its_422():
    r = client.post("/implied-volatility", json={"price": 1.875, "spot": 21, "strike": 20, "years": 0.25,
                                                 "rate": 0.1, "type": "call"})
    assert r.json()["implied_volatility"] == pytest.approx(0.2345, abs=1e-4)
    p = problems(client.post("/implied-volatility", json={"price": 0.5, "spot": 21, "strike": 20,
                                                          "years": 0.25, "rate": 0.1}))
    assert "no volatility" in p["price"]["reason"] and "between" in p["price"]["accepted"]


@pytest.mark.parametrize("change,field,reason", [
    ({"volatility": -0.2}, "volatility", "out of range"),
    ({"volatility": "0.2"}, "volatility", "is a string, not a number"),
    ({"spot": "100"}, "spot", "is a string, not a number"),
    ({"spot": [100, "101"]}, "spot[1]", "is a string, not a number"),
    ({"spot": True}, "spot", "boolean"),
    ({"strike": None}, "strike", "is missing"),
    ({"years": None, "expiry": "2020-01-01"}, "expiry", "is not after today"),
    ({"years": None, "expiry": "next friday"}, "expiry", "is not an ISO date"),
    ({"type": "straddle"}, "type", "unknown option type"),
    ({"spot": [1, 2], "strike": [1, 2, 3]}, "batch", "different lengths"),
])
def test_bad_input_gets_field_reason_and_what_is_accepted(change, field, reason):
    body = {**ONE, **change}
    p = problems(client.post("/price", json=body))
    assert field in p, p
    assert reason in p[field]["reason"]
    assert p[field]["accepted"]


def test_not_json_and_not_an_object():
    assert "body" in problems(client.post("/price", content=b"{spot: 1", headers={"content-type": "application/json"}))
    assert "body" in problems(client.post("/price", json=[1, 2]))


def test_a_10_mb_body_is_refused_with_413_before_it_is_read():
    big = json.dumps({**ONE, "spot": [100.0] * 2_000_000}).encode()
    assert len(big) > 10_000_000
    p = problems(client.post("/price", content=big, headers={"content-type": "application/json"}), status=413)
    assert "over the limit" in p["body"]["reason"]


def test_graphql_price_query():
    q = "query($s: Float!) { price(spot: $s, strike: 50, years: 0.3846153846, volatility: 0.2, rate: 0.05) { price delta gamma } }"
    r = client.post("/graphql", json={"query": q, "variables": {"s": 49}})
    assert r.status_code == 200, r.text
    d = r.json()["data"]["price"]
    assert d["price"] == pytest.approx(2.4005, abs=1e-4) and d["gamma"] == pytest.approx(0.0655, abs=1e-4)
    bad = client.post("/graphql", json={"query": "{ price(spot: 49, strike: 50, years: 1, volatility: -1) { price } }"})
    assert "volatility" in bad.json()["errors"][0]["message"]


def test_unknown_job_task_is_refused_with_the_known_ones():
    p = problems(client.post("/jobs", json={"task": "mine_bitcoin"}))
    assert "train_neural_pricer" in p["task"]["accepted"]


def test_health_and_metrics():
    assert client.get("/health").json() == {"status": "ok"}
    client.post("/price", json=ONE)
    text = client.get("/metrics").text
    assert 'bsopt_http_requests_total{route="/price",service="api",status="200"}' in text
