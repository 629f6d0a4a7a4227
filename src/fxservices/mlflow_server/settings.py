"""fx-mlflow's settings, read from the environment (docs/contracts.md):

  MLFLOW_BACKEND_STORE_URI      required, e.g. postgresql://mlflow:<pw>@postgres:5432/mlflow;
                                or MLFLOW_BACKEND_STORE_URI_FILE, a file holding it (Compose secret).
  MLFLOW_ARTIFACTS_DESTINATION  default /data/mlflow-artifacts (served by the server)
  MLFLOW_WORKERS                gunicorn workers, default 2
  MLFLOW_HOST, MLFLOW_PORT      default 0.0.0.0 and 5000
  MLFLOW_PROMETHEUS_DIR         default /tmp/mlflow-prometheus (with prometheus-flask-exporter)
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass

from fxservices.common.config import env_int, env_secret, env_str

# Runs log artifacts to the server, which stores them under the destination.
DEFAULT_ARTIFACT_ROOT = "mlflow-artifacts:/"


def backend_store_uri() -> str:
    """MLFLOW_BACKEND_STORE_URI, or the content of the file MLFLOW_BACKEND_STORE_URI_FILE names."""
    return env_secret(
        "MLFLOW_BACKEND_STORE_URI", required=True,
        hint="the MLflow server needs its backend store, e.g. "
             "postgresql://mlflow:<password>@postgres:5432/mlflow")


def open_stores() -> None:
    """MLflow's tracking store and model registry, opened in this process from the backend store
    URI (both in the same database, as `mlflow server` without --registry-store-uri has them);
    the first open creates or upgrades the tables."""
    from mlflow.server.handlers import initialize_backend_stores

    uri = backend_store_uri()
    initialize_backend_stores(uri, uri, DEFAULT_ARTIFACT_ROOT)


@dataclass(frozen=True)
class Server:
    command: list[str]          # gunicorn's command line: no secret on it (`ps` shows argv)
    env: dict[str, str]         # what MLflow's handlers read from the environment: no secret either
    artifacts: str
    prometheus_dir: str | None


def server() -> Server:
    """The server for the current environment (ConfigError if unusable)."""
    backend_store_uri()
    artifacts = env_str("MLFLOW_ARTIFACTS_DESTINATION", "/data/mlflow-artifacts")
    workers = env_int("MLFLOW_WORKERS", 2, minimum=1, maximum=32)
    host = env_str("MLFLOW_HOST", "0.0.0.0")
    port = env_int("MLFLOW_PORT", 5000, minimum=1, maximum=65535)
    # the names `mlflow server --serve-artifacts --artifacts-destination ... --default-artifact-root
    # ... [--expose-prometheus DIR]` sets for its workers (mlflow.server's *_ENV_VAR)
    env = {"_MLFLOW_SERVER_SERVE_ARTIFACTS": "true", "_MLFLOW_SERVER_ARTIFACT_DESTINATION": artifacts,
           "_MLFLOW_SERVER_ARTIFACT_ROOT": DEFAULT_ARTIFACT_ROOT}
    prom_dir = None
    if importlib.util.find_spec("prometheus_flask_exporter") is not None:
        prom_dir = env_str("MLFLOW_PROMETHEUS_DIR", "/tmp/mlflow-prometheus")
        env["prometheus_multiproc_dir"] = prom_dir
    command = [sys.executable, "-m", "gunicorn", "-b", f"{host}:{port}", "-w", str(workers),
               "fxservices.mlflow_server.app:app"]
    return Server(command, env, artifacts, prom_dir)
