"""Each stack's `kill -9` scenario: what it leaves in its stores before the kill, and that all of
it is there afterwards. The kill itself (the data stores first, one at a time, then every other
service at once, each restarted by Docker and healthy again) is one function for every stack."""

from __future__ import annotations

import json
import secrets
import time
from typing import Callable

import requests

from fxstack.envfile import read_env

from .procs import kill_and_wait, wait_for


def kill_everything(dc, running: Callable[[], dict], long_running: set[str], target) -> None:
    kill_and_wait(dc, running(), ["postgres"])
    kill_and_wait(dc, running(), ["redis"])
    kill_and_wait(dc, running(), sorted(long_running - {"postgres", "redis"}))
    states = target.states(dc)
    assert all(states[s].state == "running" and states[s].health == "healthy" for s in long_running), states


def fx(target, dc, running: Callable[[], dict], long_running: set[str]) -> None:
    """A registered model and a finished DAG run (Postgres, MLflow's artifacts), a hash next to
    Feast's keys in the Redis online store: all of it, byte for byte, after the kill."""
    from fxstack.stacks import fx_e2e as e2e

    token = secrets.token_hex(6)
    history = e2e.leave_history(e2e.endpoints(target), f"fxsec-{token}")
    values = read_env(target.env_path)
    rc, out = running()["redis"].exec_run(
        ["redis-cli", "--user", "airflow", "-h", "127.0.0.1", "HSET", f"fxsec:{token}", "close", "1.0842"],
        environment={"REDISCLI_AUTH": values["REDIS_AIRFLOW_PASSWORD"]})
    assert rc == 0 and out.strip() == b"1", out

    def redis_snapshot() -> dict:
        """Every key of db 0 (Feast's keys are binary) with its serialised value, read by the API's
        own Redis user from inside the API container."""
        code = ("import json, redis\n"
                "r = redis.Redis(host='redis', username='api', password=open('/run/secrets/api_redis_password').read())\n"
                "print(json.dumps({k.hex(): r.dump(k).hex() for k in r.scan_iter(count=1000)}, sort_keys=True))\n")
        rc, out = running()["fastapi"].exec_run(["python3", "-c", code])
        assert rc == 0, out
        return json.loads(out)

    before = redis_snapshot()
    assert f"fxsec:{token}".encode().hex() in before
    time.sleep(1.5)   # Redis' append-only file is written every second (appendfsync everysec)
    kill_everything(dc, running, long_running, target)
    assert redis_snapshot() == before
    ep = e2e.endpoints(target)
    e2e.history_kept(ep, history)
    assert requests.get(f"{ep.api}/health", timeout=10).status_code == 200


def _job(api: str, task: str, args: dict) -> dict:
    job = requests.post(f"{api}/jobs", json={"task": task, "args": args}, timeout=10).json()["id"]
    deadline = time.monotonic() + 120
    while (s := requests.get(f"{api}/jobs/{job}", timeout=10).json())["state"] not in ("SUCCESS", "FAILURE"):
        assert time.monotonic() < deadline, s
        time.sleep(0.3)
    return s


def bsopt(target, dc, running: Callable[[], dict], long_running: set[str]) -> None:
    """Postgres rows (quotes through a scrape), a dead letter (Redis), a model version (its volume):
    the same after the kill, and a job runs again."""
    urls = target.urls(["api", "neural-pricing"])
    api, pricing = urls["api"], urls["neural-pricing"]
    sid = requests.post(f"{api}/scrapes", timeout=10).json()["id"]
    wait_for(lambda: requests.get(f"{api}/scrapes/{sid}", timeout=10).json()["state"] == "done", 120, "a scrape")
    assert _job(api, "price_batch", {"spot": -1, "strike": 100, "years": 1, "rate": 0.01,
                                     "volatility": 0.2})["state"] == "FAILURE"
    assert _job(api, "train_neural_pricer", {"samples": 500, "hidden": [8]})["state"] == "SUCCESS"
    wait_for(lambda: requests.get(f"{pricing}/model", timeout=10).status_code == 200, 60, "the model served")

    def snapshot() -> dict:
        # the rows by id and identity: the scraper's restart scrapes the board again, which updates
        # scraped_at (and the worker the IVs' computed_at) of the same rows
        quotes = requests.get(f"{api}/quotes", params={"limit": 10000}, timeout=10).json()["quotes"]
        return {"quotes": sorted((q["id"], q["source"], q["underlying"], q["option_type"], q["strike"], q["expiry"],
                                  q["bid"], q["ask"]) for q in quotes),
                "dead": requests.get(f"{api}/dead-letters", params={"limit": 100}, timeout=10).json()["dead_letters"],
                "versions": requests.get(f"{pricing}/model", timeout=10).json()["versions"]}

    before = snapshot()
    assert len(before["quotes"]) == 54 and before["dead"] and before["versions"]
    time.sleep(1.5)   # Redis' append-only file is written every second (appendfsync everysec)
    kill_everything(dc, running, long_running, target)
    urls = target.urls(["api", "neural-pricing"])
    api, pricing = urls["api"], urls["neural-pricing"]
    assert snapshot() == before
    assert _job(api, "price_batch", {"spot": 100, "strike": 100, "years": 1, "rate": 0.01,
                                     "volatility": 0.2})["state"] == "SUCCESS"


SCENARIOS = {"fx": fx, "bsopt": bsopt}
