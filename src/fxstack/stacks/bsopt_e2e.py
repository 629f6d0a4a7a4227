"""`fxstack test bsopt`: the bsopt project end to end, through its published ports only.

The scraper reads the quote board through Chromium -> the quotes are in Postgres -> the worker
has computed their implied volatilities -> the API serves them over REST and GraphQL (call and
put of each strike and expiry must give the same volatility: the board quotes one smile) -> a
training job produces a neural pricer whose held-out MAE is under 0.5 % of spot -> neural
pricing serves that version -> bad inputs get 422/413 naming the field -> a poison job lands in
the dead-letter list. Each step says what failed; the timings come back for the benchmark.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO

import requests

from ..errors import FxError
from ..poll import TimedOut, poll
from .model import Running

MAE_LIMIT_PCT = 0.5


def _poll(what: str, fetch: Callable[[], Any], done: Callable[[Any], bool], timeout: float,
          interval: float = 0.2) -> Any:
    """fxstack.poll over `fetch` until `done` says so; a timeout names the last answer."""
    last: list[Any] = [None]

    def check() -> Any:
        last[0] = fetch()
        return last[0] if done(last[0]) else None

    try:
        return poll(check, timeout=timeout, interval=interval)
    except TimedOut:
        raise FxError(f"{what}: not done after {timeout:.0f} s (last answer: {str(last[0])[:800]})",
                      hint="`fxstack logs bsopt <service>`, or `fxstack status bsopt`") from None


def _json(r: requests.Response, what: str, status: int = 200) -> Any:
    if r.status_code != status:
        raise FxError(f"{what}: HTTP {r.status_code} (wanted {status}): {r.text[:800]}", where=r.url)
    return r.json()


def _job(api: str, job_id: str, timeout: float) -> dict:
    res = _poll(f"job {job_id}", lambda: _json(requests.get(f"{api}/jobs/{job_id}", timeout=10), "GET /jobs"),
                lambda b: b["state"] in ("SUCCESS", "FAILURE"), timeout)
    return res


def _expect_problem(r: requests.Response, status: int, field: str, what: str) -> None:
    body = _json(r, what, status)
    # the service kit's error shape (servicekit.problems): {"detail", "errors": [{field, reason, accepted, got}]}
    fields = [p["field"] for p in body.get("errors", [])]
    if field not in fields or not all(p.get("accepted") for p in body["errors"]):
        raise FxError(f"{what}: expected a problem for field {field!r} with what is accepted, got {body}")


URL_SERVICES = ("api", "neural-pricing")


def run(target: Running, *, timeout: float = 300, out: TextIO | None = None) -> dict[str, float]:
    out = out or sys.stdout
    urls = target.urls(URL_SERVICES)
    api, pricing = urls["api"], urls["neural-pricing"]
    t: dict[str, float] = {}
    start = time.monotonic()

    def step(msg: str) -> None:
        print(f"  [{time.monotonic() - start:6.1f}s] {msg}", file=out, flush=True)

    # 1. scrape through Chromium, now
    sid = _json(requests.post(f"{api}/scrapes", timeout=10), "POST /scrapes", 202)["id"]
    scrape = _poll("scrape", lambda: _json(requests.get(f"{api}/scrapes/{sid}", timeout=10), "GET /scrapes"),
                   lambda b: b.get("state") in ("done", "failed"), timeout)
    if scrape["state"] != "done" or not scrape.get("quotes"):
        raise FxError(f"the scraper's run failed: {scrape}", hint="see the scraper's log: its errors name the target")
    t["scrape_s"] = scrape["seconds"]
    step(f"scraper read {scrape['quotes']} quotes through Chromium in {scrape['seconds']:.2f} s")

    # 2. the worker's implied volatilities of exactly those quotes
    iv = _job(api, scrape["iv_job"], timeout)
    if iv["state"] != "SUCCESS" or iv["result"]["solved"] != scrape["quotes"]:
        raise FxError(f"implied-volatility job: {iv}", hint="see the worker's log")
    quotes = _json(requests.get(f"{api}/quotes", params={"limit": 10000}, timeout=30), "GET /quotes")["quotes"]
    fresh = [q for q in quotes if q["iv"] is not None]
    if len(fresh) < scrape["quotes"]:
        raise FxError(f"GET /quotes: {len(fresh)} quotes with an IV, the scrape wrote {scrape['quotes']}")
    smile: dict[tuple, dict[str, float]] = {}
    for q in fresh:
        smile.setdefault((q["source"], q["expiry"], q["strike"]), {})[q["option_type"]] = q["iv"]
    pairs = [v for v in smile.values() if len(v) == 2]
    worst = max(abs(v["call"] - v["put"]) for v in pairs)
    if not pairs or worst > 1e-6:
        raise FxError(f"call and put implied volatilities differ by up to {worst:.2e} (the board quotes one smile)")
    step(f"worker: {iv['result']['solved']} implied volatilities; call = put IV within {worst:.1e}")

    # 3. GraphQL serves the same
    gql = _json(requests.post(f"{api}/graphql", timeout=30, json={
        "query": "query($n: Int) { quotes(limit: $n) { id optionType strike impliedVol } }",
        "variables": {"n": 10000}}), "POST /graphql")
    by_id = {q["id"]: q["iv"] for q in fresh}
    g_quotes = [q for q in gql["data"]["quotes"] if q["id"] in by_id]
    if len(g_quotes) != len(by_id) or any(q["impliedVol"] != by_id[q["id"]] for q in g_quotes):
        raise FxError("GraphQL quotes differ from REST /quotes")
    step(f"GraphQL: {len(g_quotes)} quotes, the same implied volatilities as REST")

    # 4. train the neural pricer; neural pricing swaps to it
    t0 = time.monotonic()
    job = _json(requests.post(f"{api}/jobs", json={"task": "train_neural_pricer"}, timeout=10), "POST /jobs", 202)
    trained = _job(api, job["id"], timeout)
    if trained["state"] != "SUCCESS":
        raise FxError(f"training job failed: {trained}", hint="see the worker's log")
    result = trained["result"]
    if not result["heldout_mae_pct_spot"] < MAE_LIMIT_PCT:
        raise FxError(f"neural pricer v{result['version']}: held-out MAE {result['heldout_mae_pct_spot']:.3f} % "
                      f"of spot, over {MAE_LIMIT_PCT} %")
    model = _poll("neural pricing to serve the new model",
                  lambda: requests.get(f"{pricing}/model", timeout=10).json(),
                  lambda b: b.get("version") == result["version"], 30)
    t["train_to_served_s"] = time.monotonic() - t0
    priced = _json(requests.post(f"{pricing}/price", timeout=10, json={
        "spot": 100, "strike": [90, 100, 110], "years": 0.5, "rate": 0.03, "volatility": 0.25,
        "type": "put"}), "POST neural /price")
    if priced["model_version"] != model["version"] or max(abs(e) for e in priced["error"]) > 1.0:
        raise FxError(f"neural pricing answer: {priced}")
    step(f"trained v{result['version']} in {result['train_seconds']:.1f} s (held-out MAE "
         f"{result['heldout_mae_pct_spot']:.3f} % of spot); neural pricing serves it "
         f"(errors {', '.join(f'{e:+.3f}' for e in priced['error'])})")

    # 5. bad inputs, clearly refused
    one = {"spot": 100, "strike": 100, "years": 1, "volatility": 0.2}
    _expect_problem(requests.post(f"{api}/price", json={**one, "volatility": -0.2}, timeout=10), 422,
                    "volatility", "negative volatility")
    _expect_problem(requests.post(f"{api}/price", json={**{k: v for k, v in one.items() if k != "years"},
                                                         "expiry": "2001-01-01"}, timeout=10), 422,
                    "expiry", "expiry in the past")
    _expect_problem(requests.post(f"{api}/price", json={**one, "spot": "100"}, timeout=10), 422, "spot",
                    "a string for a number")
    big = b'{"spot": [' + b"100.0, " * 1_500_000 + b'100.0], "strike": 100, "years": 1, "volatility": 0.2}'
    _expect_problem(requests.post(f"{api}/price", data=big, headers={"content-type": "application/json"},
                                  timeout=30), 413, "body", "a 10 MB body")
    _expect_problem(requests.post(f"{pricing}/price", json={**one, "volatility": -1}, timeout=10), 422,
                    "volatility", "neural pricing: negative volatility")
    step("bad inputs: negative volatility, past expiry, a string for a number -> 422 with the field; "
         f"{len(big) / 1e6:.1f} MB body -> 413")

    # 6. a poison message goes to the dead-letter list, not round and round
    job = _json(requests.post(f"{api}/jobs", json={"task": "audit", "args": {"event": ""}}, timeout=10),
                "POST /jobs", 202)
    failed = _job(api, job["id"], 60)
    dead = _poll("the dead-letter entry", lambda: _json(requests.get(f"{api}/dead-letters", timeout=10),
                                                        "GET /dead-letters")["dead_letters"],
                 lambda entries: any(e["id"] == job["id"] for e in entries), 30)
    entry = next(e for e in dead if e["id"] == job["id"])
    if failed["state"] != "FAILURE" or not entry["poison"] or entry["retries"] != 0:
        raise FxError(f"poison job: state {failed['state']}, dead letter {entry}")
    step("poison job: failed once, not retried, in the dead-letter list")
    t["end_to_end_s"] = time.monotonic() - start
    print(f"bsopt end to end: ok in {t['end_to_end_s']:.1f} s", file=out)
    return t
