"""Each service's own readiness, asked through its published port once Docker calls it healthy.

A container's health check says the process answers; it does not say the service can do its
job. Seen: after `down` + `up` with a model registered, the first `POST /predict` answered 503
("the MLflow registry cannot be reached") although every container was healthy. So `up` asks
each service what only it knows:

  mlflow             the model registry answers a search (its database is reachable)
  airflow-webserver  /health: metadata database and scheduler both "healthy"
  fastapi            /ready: when MLflow has a version with the serving alias, every worker
                     serves exactly that version; with none registered yet, /ready answers
                     and says so (nothing can be served before the DAG has run)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, TextIO

import requests

from ..errors import FxError
from ..poll import TimedOut, poll


@dataclass
class Answer:
    ready: bool
    detail: str


Probe = Callable[[dict[str, str], dict[str, str]], Answer]


def _get(url: str, **kw) -> requests.Response:
    kw.setdefault("timeout", 5)
    return requests.get(url, **kw)


def registered_version(mlflow: str, name: str, alias: str) -> str | None:
    """The version MLflow's alias marks, None when nothing carries it. Raises
    requests.RequestException / FxError when the registry cannot answer."""
    r = _get(f"{mlflow}/api/2.0/mlflow/registered-models/alias", params={"name": name, "alias": alias})
    # no such model: 404 RESOURCE_DOES_NOT_EXIST; a model without that alias: 400 "... alias ... not found."
    if r.status_code == 404 or (r.status_code == 400 and "not found" in r.text):
        return None
    if r.status_code != 200:
        raise FxError(f"MLflow answered {r.status_code} for the alias {alias!r} of {name!r}: {r.text[:200]}")
    return str(r.json()["model_version"]["version"])


def mlflow_ready(urls: dict[str, str], settings: dict[str, str]) -> Answer:
    r = _get(f"{urls['mlflow']}/api/2.0/mlflow/registered-models/search", params={"max_results": 1})
    if r.status_code == 200:
        return Answer(True, "model registry answers")
    return Answer(False, f"registry search answered {r.status_code}: {r.text[:200]}")


def airflow_ready(urls: dict[str, str], settings: dict[str, str]) -> Answer:
    r = _get(f"{urls['airflow-webserver']}/health")
    if r.status_code != 200:
        return Answer(False, f"/health answered {r.status_code}")
    body = r.json()
    parts = {part: (body.get(part) or {}).get("status") for part in ("metadatabase", "scheduler")}
    if all(status == "healthy" for status in parts.values()):
        return Answer(True, "metadata database and scheduler healthy")
    return Answer(False, ", ".join(f"{part} {status}" for part, status in parts.items()))


def api_ready(urls: dict[str, str], settings: dict[str, str]) -> Answer:
    name = settings.get("FX_MODEL_NAME") or "fx-direction"
    alias = settings.get("FX_MODEL_ALIAS") or "serving"
    version = registered_version(urls["mlflow"], name, alias) if "mlflow" in urls else None
    r = _get(f"{urls['fastapi']}/ready")
    try:
        body = r.json()
    except ValueError:
        return Answer(False, f"/ready answered {r.status_code} without JSON: {r.text[:200]}")
    if version is None:
        return Answer(True, f"no version of {name!r} has the alias {alias!r} yet: POST /predict answers 503 "
                            "until the fx_pipeline DAG has registered one")
    served = ((body.get("checks") or {}).get("model") or {}).get("version")
    if r.status_code == 200 and str(served) == version:
        return Answer(True, f"serving {name} version {version}")
    return Answer(False, f"registered version {version}; /ready: {r.status_code} "
                         f"{body.get('detail') or body}"[:400])


PROBES: dict[str, Probe] = {
    "mlflow": mlflow_ready,
    "airflow-webserver": airflow_ready,
    "fastapi": api_ready,
}


def ask(probe: Probe, urls: dict[str, str], settings: dict[str, str]) -> Answer:
    """One probe; a service that does not answer yet is not ready (connection refused, timeout)."""
    try:
        return probe(urls, settings)
    except (requests.RequestException, FxError, ValueError, KeyError) as exc:
        return Answer(False, f"{type(exc).__name__}: {str(exc)[:300]}")


def wait_ready(urls: dict[str, str], settings: dict[str, str], *, timeout: float, out: TextIO,
               elapsed: Callable[[], float], probes: dict[str, Probe] | None = None) -> dict[str, float]:
    """Ask every probe whose service is published in `urls` until all say ready; return
    {service: seconds (by `elapsed`) when it became ready}. FxError after `timeout` seconds,
    naming each service still waiting and what it last said."""
    waiting = {svc: probe for svc, probe in (probes or PROBES).items() if svc in urls}
    last: dict[str, Answer] = {}
    ready: dict[str, float] = {}

    def everyone_ready() -> dict[str, float] | None:
        for svc, probe in list(waiting.items()):
            last[svc] = answer = ask(probe, urls, settings)
            if answer.ready:
                ready[svc] = elapsed()
                del waiting[svc]
                print(f"  [{ready[svc]:6.1f}s] {svc} ready: {answer.detail}", file=out, flush=True)
        return ready if not waiting else None

    try:
        return poll(everyone_ready, timeout=timeout, interval=0.5)
    except TimedOut:
        lines = "\n".join(f"  {svc}: {last[svc].detail}" for svc in waiting)
        raise FxError(f"healthy but not ready within {timeout:.0f} s:\n{lines}", where=", ".join(waiting),
                      hint=f"`fxstack logs {next(iter(waiting))}` shows why; `fxstack up` again waits anew") from None
