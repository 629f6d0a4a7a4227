"""The FX stack's readiness probes (StackDef.probes): what each published service says about its
own job once its container is healthy.

  mlflow             the model registry answers a search (its database is reachable)
  airflow-webserver  /health: metadata database and scheduler both "healthy"
  fastapi            /ready: when MLflow has a version with the serving alias, every worker
                     serves exactly that version; with none registered yet, /ready answers
                     and says so (nothing can be served before the DAG has run)
"""

from __future__ import annotations

import requests

from ..errors import FxError
from .model import Answer, Probe


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


