"""`fxstack test`: the end-to-end run against the running stack, through its published ports only.

Airflow's REST API (basic auth, the admin user from compose/.env) triggers `fx_pipeline` and waits
for it; MLflow's registry must then hold the version the alias marks for serving; `POST /predict`
must answer with that version; Prometheus must report every scrape target up. Each step says what
failed and what to look at.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import TextIO

import requests

from ..errors import FxError
from ..poll import TimedOut, poll
from .model import Running

DAG_ID = "fx_pipeline"


@dataclass
class Endpoints:
    airflow: str
    mlflow: str
    api: str
    prometheus: str
    auth: tuple[str, str]
    model_name: str
    model_alias: str
    pairs: list[str]


def endpoints(target: Running) -> Endpoints:
    """Base URLs of the published services (from Docker's port bindings) and the admin login."""
    urls = target.urls(("airflow-webserver", "mlflow", "fastapi", "prometheus"))
    env_file = target.env_path
    env = target.settings()
    if not env.get("AIRFLOW_ADMIN_PASSWORD"):
        raise FxError(f"no AIRFLOW_ADMIN_PASSWORD in {env_file}", hint="`fxstack up` writes it on first run")
    pairs = [p.strip() for p in (env.get("FX_PAIRS") or "EUR_USD,GBP_USD,USD_JPY").split(",") if p.strip()]
    return Endpoints(
        airflow=urls["airflow-webserver"], mlflow=urls["mlflow"], api=urls["fastapi"],
        prometheus=urls["prometheus"],
        auth=(env.get("AIRFLOW_ADMIN_USER") or "admin", env["AIRFLOW_ADMIN_PASSWORD"]),
        model_name=env.get("FX_MODEL_NAME") or "fx-direction",
        model_alias=env.get("FX_MODEL_ALIAS") or "serving",
        pairs=pairs,
    )


def _get(url: str, **kw) -> requests.Response:
    kw.setdefault("timeout", 30)
    return requests.get(url, **kw)


# ---------------------------------------------------------------- what must survive
@dataclass(frozen=True)
class History:
    """A registered model (MLflow -> Postgres) and a finished DAG run (Airflow -> Postgres): what a
    restart, a lost node or a new checkout must keep."""
    model: str
    run_id: str


def leave_history(ep: Endpoints, tag: str) -> History:
    """Register an empty model and record a DAG run marked failed (so it never executes)."""
    history = History(model=tag, run_id=tag)
    r = requests.post(f"{ep.mlflow}/api/2.0/mlflow/registered-models/create", json={"name": history.model},
                      timeout=30)
    if r.status_code != 200:
        raise FxError(f"MLflow did not register model {history.model!r}: {r.status_code} {r.text[:300]}")
    wait_for_dag(ep)
    runs = f"{ep.airflow}/api/v1/dags/{DAG_ID}/dagRuns"
    for r in (requests.post(runs, json={"dag_run_id": history.run_id}, auth=ep.auth, timeout=30),
              requests.patch(f"{runs}/{history.run_id}", json={"state": "failed"}, auth=ep.auth, timeout=30)):
        if r.status_code != 200:
            raise FxError(f"Airflow did not record DAG run {history.run_id!r}: {r.status_code} {r.text[:300]}")
    return history


def history_kept(ep: Endpoints, history: History) -> None:
    """Raise unless both records of leave_history are still there."""
    r = _get(f"{ep.mlflow}/api/2.0/mlflow/registered-models/get", params={"name": history.model})
    if r.status_code != 200:
        raise FxError(f"registered model {history.model!r} is gone from MLflow: {r.status_code} {r.text[:300]}",
                      hint="MLflow's registry lives in Postgres: was its volume replaced?")
    r = _get(f"{ep.airflow}/api/v1/dags/{DAG_ID}/dagRuns/{history.run_id}", auth=ep.auth)
    if r.status_code != 200 or r.json().get("state") != "failed":
        raise FxError(f"Airflow's run {history.run_id!r} is gone or changed: {r.status_code} {r.text[:300]}",
                      hint="Airflow's metadata lives in Postgres: was its volume replaced?")


# ---------------------------------------------------------------- Airflow
def wait_for_dag(ep: Endpoints, timeout: float = 300) -> dict:
    """The DAG as the REST API sees it, once the scheduler has parsed it."""
    last = ""

    def parsed() -> dict | None:
        nonlocal last
        r = _get(f"{ep.airflow}/api/v1/dags/{DAG_ID}", auth=ep.auth)
        if r.status_code == 200:
            return r.json()
        if r.status_code in (401, 403):
            raise FxError(f"Airflow REST API refused the admin login ({r.status_code}): {r.text[:300]}",
                          hint="check AIRFLOW_ADMIN_USER/PASSWORD in compose/.env; airflow-init sets them "
                               "(`fxstack logs airflow-init`)")
        last = f"{r.status_code} {r.text[:200]}"
        return None

    try:
        return poll(parsed, timeout=timeout, interval=3)
    except TimedOut:
        pass
    raise FxError(f"DAG {DAG_ID} did not appear in Airflow within {timeout:.0f} s (last answer: {last})",
                  hint="the scheduler parses the DAG folder: `fxstack logs airflow-scheduler`; "
                       "import errors show at /api/v1/importErrors")


def trigger_dag(ep: Endpoints) -> str:
    r = requests.patch(f"{ep.airflow}/api/v1/dags/{DAG_ID}", json={"is_paused": False}, auth=ep.auth,
                       params={"update_mask": "is_paused"}, timeout=30)
    if r.status_code != 200:
        raise FxError(f"could not unpause {DAG_ID}: {r.status_code} {r.text[:300]}")
    run_id = f"fxstack-test-{time.strftime('%Y%m%dT%H%M%S')}-{int(time.time() * 1000) % 1000:03d}"
    r = requests.post(f"{ep.airflow}/api/v1/dags/{DAG_ID}/dagRuns", json={"dag_run_id": run_id, "conf": {}},
                      auth=ep.auth, timeout=30)
    if r.status_code not in (200, 201):
        raise FxError(f"could not trigger {DAG_ID}: {r.status_code} {r.text[:300]}")
    return run_id


def task_instances(ep: Endpoints, run_id: str) -> list[dict]:
    r = _get(f"{ep.airflow}/api/v1/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances", auth=ep.auth)
    return r.json().get("task_instances", []) if r.status_code == 200 else []


def task_log(ep: Endpoints, run_id: str, task_id: str, try_number: int) -> str:
    r = _get(f"{ep.airflow}/api/v1/dags/{DAG_ID}/dagRuns/{run_id}/taskInstances/{task_id}/logs/{try_number}",
             auth=ep.auth, headers={"Accept": "text/plain"})
    return r.text if r.status_code == 200 else f"(log unavailable: {r.status_code})"


def log_excerpt(text: str, lines: int = 30, width: int = 300) -> str:
    """The part of a task log that explains a failure: from the first 'Task failed' / traceback
    (up to `lines` lines), else the last `lines` lines; long lines cut to `width`."""
    all_lines = text.splitlines()
    start = next((i for i, line in enumerate(all_lines) if "Task failed with exception" in line), None)
    if start is None:
        start = next((i for i, line in enumerate(all_lines) if line.startswith("Traceback")), None)
    picked = all_lines[start:start + lines] if start is not None else all_lines[-lines:]
    return "\n".join(line if len(line) <= width else line[:width] + " ..." for line in picked)


def dag_run_failure(ep: Endpoints, run_id: str) -> FxError:
    """A failed run, with the failed tasks' log excerpts."""
    failed = [ti for ti in task_instances(ep, run_id) if ti.get("state") in ("failed", "upstream_failed")]
    detail = ""
    for ti in failed:
        if ti.get("state") == "failed":
            text = task_log(ep, run_id, ti["task_id"], max(1, ti.get("try_number") or 1))
            detail += f"\n--- log of task {ti['task_id']} ---\n" + log_excerpt(text)
    return FxError(f"DAG run {run_id} failed; failed tasks: "
                   f"{', '.join(t['task_id'] + '=' + t['state'] for t in failed) or '?'}{detail}",
                   hint="`fxstack logs airflow-worker` has the worker's side; the Airflow UI shows every try")


def wait_dag_run(ep: Endpoints, run_id: str, timeout: float = 900, out: TextIO | None = None) -> dict:
    seen: dict[str, str] = {}
    state = None

    def finished() -> dict | None:
        nonlocal state
        r = _get(f"{ep.airflow}/api/v1/dags/{DAG_ID}/dagRuns/{run_id}", auth=ep.auth)
        run = r.json() if r.status_code == 200 else {}
        if out is not None:
            for ti in task_instances(ep, run_id):
                task_state = ti.get("state") or "none"
                if seen.get(ti["task_id"]) != task_state:
                    seen[ti["task_id"]] = task_state
                    print(f"  task {ti['task_id']:<16} {task_state}", file=out, flush=True)
        state = run.get("state")
        if state == "failed":
            raise dag_run_failure(ep, run_id)
        return run if state == "success" else None

    try:
        return poll(finished, timeout=timeout, interval=3)
    except TimedOut:
        raise FxError(f"DAG run {run_id} still {state!r} after {timeout:.0f} s",
                      hint="is the Celery worker up and consuming? `fxstack logs airflow-worker`") from None


# ---------------------------------------------------------------- MLflow
def serving_version(ep: Endpoints) -> dict:
    """The model version the alias marks for serving (MLflow REST API)."""
    r = _get(f"{ep.mlflow}/api/2.0/mlflow/registered-models/alias",
             params={"name": ep.model_name, "alias": ep.model_alias})
    if r.status_code != 200:
        raise FxError(f"MLflow has no version of {ep.model_name!r} with alias {ep.model_alias!r}: "
                      f"{r.status_code} {r.text[:300]}",
                      hint="the DAG's train_register task registers it: check its log in Airflow")
    return r.json()["model_version"]


def artifact_listing(ep: Endpoints, run_id: str) -> list[dict]:
    r = _get(f"{ep.mlflow}/api/2.0/mlflow/artifacts/list", params={"run_id": run_id})
    r.raise_for_status()
    return r.json().get("files", [])


# ---------------------------------------------------------------- inference API
def predict(ep: Endpoints, pair: str) -> requests.Response:
    return requests.post(f"{ep.api}/predict", json={"pair": pair}, timeout=30)


def response_version(body: dict) -> str | None:
    for key in ("model_version", "version"):
        if key in body:
            return str(body[key])
    return None


def wait_predict_version(ep: Endpoints, pair: str, version: str, timeout: float = 120) -> dict:
    """POST /predict until it answers 200 with `version` (the API picks new versions up by itself)."""
    last = ""

    def served() -> dict | None:
        nonlocal last
        r = predict(ep, pair)
        if r.status_code == 200:
            body = r.json()
            if response_version(body) == str(version):
                return body
            last = f"200 with version {response_version(body)!r}: {str(body)[:200]}"
        else:
            last = f"{r.status_code} {r.text[:300]}"
        return None

    try:
        return poll(served, timeout=timeout, interval=2)
    except TimedOut:
        pass
    raise FxError(f"POST /predict for {pair} did not answer with model version {version} within "
                  f"{timeout:.0f} s (last: {last})", hint="`fxstack logs fastapi`")


def wait_served_everywhere(ep: Endpoints, version: str, timeout: float = 120, rounds: int = 3) -> None:
    """Until `rounds` passes over every pair all answer 200 with `version`. Each API worker
    finds a new version on its own registry poll, so for a few seconds after the first 200
    another worker may still answer 503: the stack serves the model once they all do."""
    last = ""

    def all_served() -> bool | None:
        nonlocal last
        for _ in range(rounds):
            for pair in ep.pairs:
                r = predict(ep, pair)
                got = response_version(r.json()) if r.status_code == 200 else None
                if got != str(version):
                    last = f"{pair}: {r.status_code} {r.text[:200]}"
                    return None
        return True

    try:
        poll(all_served, timeout=timeout, interval=1)
    except TimedOut:
        raise FxError(f"POST /predict did not answer with model version {version} for every pair, "
                      f"{rounds} times over, within {timeout:.0f} s (last: {last})",
                      hint="`fxstack logs fastapi`") from None


# ---------------------------------------------------------------- Prometheus
def targets(ep: Endpoints) -> list[dict]:
    r = _get(f"{ep.prometheus}/api/v1/targets", params={"state": "active"})
    r.raise_for_status()
    return r.json()["data"]["activeTargets"]


def wait_targets_up(ep: Endpoints, timeout: float = 90) -> list[dict]:
    down: list[dict] = []

    def all_up() -> list[dict] | None:
        nonlocal down
        ts = targets(ep)
        down = [t for t in ts if t.get("health") != "up"]
        return ts if ts and not down else None

    try:
        return poll(all_up, timeout=timeout, interval=3)
    except TimedOut:
        lines = "; ".join(f"{t['labels'].get('job')} ({t.get('scrapeUrl')}): {t.get('health')} "
                          f"{t.get('lastError', '')}" for t in down) or "no targets"
        raise FxError(f"Prometheus scrape targets not up after {timeout:.0f} s: {lines}",
                      hint="each job is a service on the backend network: `fxstack status`, "
                           "and compose/prometheus.yml for the paths") from None


@dataclass
class E2EResult:
    run_id: str
    dag_seconds: float
    model_version: str
    prediction: dict
    targets_up: list[str] = field(default_factory=list)


def run(target: Running, *, out: TextIO | None = None, timeout: float = 900) -> E2EResult:
    """The whole run; `timeout` bounds the DAG run."""
    out = out or sys.stdout
    dag_timeout = timeout
    ep = endpoints(target)
    print(f"Airflow {ep.airflow}  MLflow {ep.mlflow}  API {ep.api}  Prometheus {ep.prometheus}", file=out)
    wait_for_dag(ep)
    start = time.monotonic()
    run_id = trigger_dag(ep)
    print(f"triggered {DAG_ID} run {run_id}", file=out, flush=True)
    wait_dag_run(ep, run_id, timeout=dag_timeout, out=out)
    dag_seconds = time.monotonic() - start
    print(f"DAG run succeeded in {dag_seconds:.1f} s", file=out)
    mv = serving_version(ep)
    version = str(mv["version"])
    print(f"MLflow: {ep.model_name} version {version} has alias {ep.model_alias!r} (run {mv.get('run_id')})",
          file=out)
    body = wait_predict_version(ep, ep.pairs[0], version)
    wait_served_everywhere(ep, version)
    total = time.monotonic() - start
    print(f"POST /predict {ep.pairs[0]} -> {body}", file=out)
    print(f"ingest -> registered model -> served prediction: {total:.1f} s", file=out)
    ts = wait_targets_up(ep)
    jobs = sorted({t["labels"].get("job", "?") for t in ts})
    print(f"Prometheus: {len(ts)} targets up ({', '.join(jobs)})", file=out)
    print("end-to-end test passed", file=out)
    return E2EResult(run_id=run_id, dag_seconds=total, model_version=version, prediction=body, targets_up=jobs)
