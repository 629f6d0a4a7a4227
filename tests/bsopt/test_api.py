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
    """The service kit's error shape (servicekit.problems), by field."""
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail", "errors"} and body["errors"], body
    for p in body["errors"]:
        assert set(p) == {"field", "reason", "accepted", "got"}, p
        assert p["field"] in body["detail"] and p["accepted"], body
    return {p["field"]: p for p in body["errors"]}


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
    assert "body" in problems(client.post("/price", content=b"\xff\xfe{}", headers={"content-type": "application/json"}))


@pytest.mark.parametrize("change,field", [
    ({"greeks": "no"}, "greeks"),  # a string would have read as true
    ({"greeks": 0}, "greeks"),
    ({"spot": 10 ** 400}, "spot"),  # a JSON integer too large for a float
    ({"strike": [10 ** 400, 1]}, "strike"),
])
def test_flags_are_booleans_and_huge_integers_are_refused(change, field):
    assert field in problems(client.post("/price", json={**ONE, **change}))


def test_an_out_of_range_query_parameter_is_a_422_not_a_500():
    p = problems(client.get("/dead-letters", params={"limit": "179473779497601818200111054848"}))
    assert p["limit"]["got"] == "179473779497601818200111054848" and "1000" in p["limit"]["reason"]
    assert "limit" in problems(client.get("/quotes", params={"limit": 0}))
    assert "job_id" in problems(client.get("/jobs/not-a-uuid"))


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


def _graphql_timed(query: str):
    import time

    body = json.dumps({"query": query}).encode()
    client.post("/graphql", content=body, headers={"content-type": "application/json"})  # warm
    t0 = time.perf_counter()
    r = client.post("/graphql", content=body, headers={"content-type": "application/json"})
    return r, time.perf_counter() - t0


def test_graphql_5000_aliases_are_refused_at_once_naming_the_limit():
    from bsopt.api.graphql import MAX_QUERY_CHARS

    query = "{" + " ".join(f"q{i}: quotes(limit: 1000) {{ id strike bid ask }}" for i in range(5000)) + "}"
    assert len(query) > 200_000
    r, seconds = _graphql_timed(query)
    assert r.status_code == 400 and r.json()["data"] is None
    message = r.json()["errors"][0]["message"]
    assert f"over the limit of {MAX_QUERY_CHARS}" in message and "aliases" in message
    assert seconds < 0.05, f"{seconds * 1000:.1f} ms"


@pytest.mark.parametrize("query,limit", [
    ("{" + " ".join(f"p{i}: price(spot: 1, strike: 1, years: 1, volatility: 0.2) {{ price }}" for i in range(11)) + "}",
     "more than 10 aliases"),
    ("{ quotes { " + " ".join(["id"] * 201) + " } }", "more than 200 selected fields"),
    ("{ __schema { types { fields { type { ofType { ofType { name } } } } } } }", "more than 6 levels of nesting"),
    ("{ price(spot: 1, strike: 1, years: 1, volatility: 0.2) { price } }" + " " * 9990, "over the limit of 10000"),
    # aliases cannot multiply the rows read: all `quotes` limits together at most 10,000
    ("{ a: quotes(limit: 6000) { id } b: quotes(limit: 4001) { id } }", "more than 10000 quote rows"),
    ("query($n: Int) { a: quotes(limit: $n) { id } b: quotes { id } }", "more than 10000 quote rows"),
    # fragments count where they are spread: 3 spreads of 4 aliases are 12
    ("{ ...F ...F ...F } fragment F on Query { " + " ".join(
        f"p{i}: price(spot: 1, strike: 1, years: 1, volatility: 0.2) {{ price }}" for i in range(4)) + " }",
     "more than 10 aliases"),
    # nested spreads that double at every level stop being counted one past the limit
    ("{ ...F0 } " + " ".join(f"fragment F{i} on Query {{ ...F{i + 1} ...F{i + 1} }}" for i in range(30))
     + " fragment F30 on Query { __typename }", "more than 200 selected fields"),
])
def test_graphql_depth_aliases_fields_and_length_are_bounded(query, limit):
    r = client.post("/graphql", json={"query": query})
    assert r.status_code == 400, r.text
    assert limit in r.json()["errors"][0]["message"], r.json()


def test_graphql_within_the_limits_still_answers():
    q = "{" + " ".join(f"p{i}: price(spot: 100, strike: 100, years: 1, volatility: 0.2) {{ price delta }}"
                       for i in range(10)) + "}"
    r = client.post("/graphql", json={"query": q})
    assert r.status_code == 200 and len(r.json()["data"]) == 10, r.text


def test_unknown_job_task_is_refused_with_the_known_ones():
    p = problems(client.post("/jobs", json={"task": "mine_bitcoin"}))
    assert "train_neural_pricer" in p["task"]["accepted"]


def test_health_and_metrics():
    assert client.get("/health").json() == {"status": "ok"}
    client.post("/price", json=ONE)
    text = client.get("/metrics").text
    assert 'bsopt_http_requests_total{method="POST",route="/price",status="200"}' in text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_openapi_describes_every_body_and_answer_with_models():
    spec = client.get("/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if method == "post" and path not in ("/scrapes",):
                assert body and body.get("$ref"), (method, path)
            for status, answer in op["responses"].items():
                for media, content in answer.get("content", {}).items():
                    assert content.get("schema") not in (None, {}), (method, path, status, media)
    assert spec["paths"]["/price"]["post"]["responses"]["422"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/ErrorBody"}
