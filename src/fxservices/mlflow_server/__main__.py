"""Launcher of the MLflow tracking server + registry: `python3 -m fxservices.mlflow_server`.

Reads (docs/contracts.md):
  MLFLOW_BACKEND_STORE_URI      required, e.g. postgresql://mlflow:<pw>@postgres:5432/mlflow;
                                or MLFLOW_BACKEND_STORE_URI_FILE, a file holding it (Compose secret).
                                Handed to `mlflow server` in its environment, never on its command
                                line (which `ps` shows to every user of the host).
  MLFLOW_ARTIFACTS_DESTINATION  default /data/mlflow-artifacts (served by the server)
  MLFLOW_WORKERS                gunicorn workers, default 2
  MLFLOW_HOST, MLFLOW_PORT      default 0.0.0.0 and 5000
  MLFLOW_PROMETHEUS_DIR         default /tmp/mlflow-prometheus (with prometheus-flask-exporter)
and execs `mlflow server` so that it replaces this process.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys

from fxservices.common.config import ConfigError, env_int, env_secret, env_str


def backend_store_uri() -> str:
    """MLFLOW_BACKEND_STORE_URI, or the content of the file MLFLOW_BACKEND_STORE_URI_FILE names."""
    return env_secret(
        "MLFLOW_BACKEND_STORE_URI", required=True,
        hint="the MLflow server needs its backend store, e.g. "
             "postgresql://mlflow:<password>@postgres:5432/mlflow")


def build_command() -> list[str]:
    """The `mlflow server` command line for the current environment (ConfigError if unusable).
    The backend store URI is not on it: `mlflow server` reads MLFLOW_BACKEND_STORE_URI itself."""
    backend_store_uri()
    artifacts = env_str("MLFLOW_ARTIFACTS_DESTINATION", "/data/mlflow-artifacts")
    workers = env_int("MLFLOW_WORKERS", 2, minimum=1, maximum=32)
    host = env_str("MLFLOW_HOST", "0.0.0.0")
    port = env_int("MLFLOW_PORT", 5000, minimum=1, maximum=65535)
    prom_dir = env_str("MLFLOW_PROMETHEUS_DIR", "/tmp/mlflow-prometheus")
    # next to this interpreter first (a venv), then PATH
    here = os.path.join(os.path.dirname(sys.executable), "mlflow")
    mlflow_bin = here if os.access(here, os.X_OK) else (shutil.which("mlflow") or "mlflow")
    cmd = [
        mlflow_bin, "server",
        "--host", host,
        "--port", str(port),
        "--workers", str(workers),
        "--serve-artifacts",
        "--artifacts-destination", artifacts,
        "--default-artifact-root", "mlflow-artifacts:/",
    ]
    if importlib.util.find_spec("prometheus_flask_exporter") is not None:
        cmd += ["--expose-prometheus", prom_dir]
    return cmd


def _redact(cmd: list[str]) -> str:
    import re

    return " ".join(re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", c) for c in cmd)


def main() -> None:
    try:
        cmd = build_command()
        env = {**os.environ, "MLFLOW_BACKEND_STORE_URI": backend_store_uri()}
    except ConfigError as exc:
        print(f"fx-mlflow: {exc}", file=sys.stderr)
        sys.exit(2)
    artifacts = cmd[cmd.index("--artifacts-destination") + 1]
    if "://" not in artifacts:
        try:
            os.makedirs(artifacts, exist_ok=True)
        except OSError as exc:
            print(f"fx-mlflow: MLFLOW_ARTIFACTS_DESTINATION={artifacts}: cannot create it "
                  f"({exc}); mount a volume writable by uid {os.getuid()} there",
                  file=sys.stderr)
            sys.exit(2)
    if "--expose-prometheus" in cmd:
        os.makedirs(cmd[cmd.index("--expose-prometheus") + 1], exist_ok=True)
    print(f"fx-mlflow: exec {_redact(cmd)}", file=sys.stderr, flush=True)
    env.pop("MLFLOW_BACKEND_STORE_URI_FILE", None)
    os.execve(cmd[0], cmd, env)


if __name__ == "__main__":
    main()
