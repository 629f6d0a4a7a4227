"""The fx-mlflow launcher: command line from the environment, and a real server through it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import service_env


@pytest.mark.unit
def test_command_line_from_environment(monkeypatch):
    from fxservices.mlflow_server.__main__ import build_command

    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", "postgresql://mlflow:pw@postgres:5432/mlflow")
    monkeypatch.delenv("MLFLOW_ARTIFACTS_DESTINATION", raising=False)
    for name in ("MLFLOW_HOST", "MLFLOW_PORT", "MLFLOW_WORKERS"):
        monkeypatch.delenv(name, raising=False)
    cmd = build_command()
    assert cmd[0].endswith("mlflow") and cmd[1] == "server"
    args = dict(zip(cmd[2::1], cmd[3::1]))
    assert args["--host"] == "0.0.0.0" and args["--port"] == "5000"
    # the URI (with its password) goes to `mlflow server` in its environment: `ps` shows argv
    assert "--backend-store-uri" not in cmd and not any("pw@" in c for c in cmd)
    assert args["--artifacts-destination"] == "/data/mlflow-artifacts"
    assert args["--default-artifact-root"] == "mlflow-artifacts:/"
    assert "--serve-artifacts" in cmd
    # prometheus-flask-exporter is in the mlflow group (the fx-mlflow image and this test env)
    assert args["--expose-prometheus"] == "/tmp/mlflow-prometheus"


@pytest.mark.unit
def test_no_metrics_flag_without_the_exporter(monkeypatch):
    """An MLflow install without prometheus-flask-exporter: `mlflow server
    --expose-prometheus` would exit at start, so the launcher leaves the flag out."""
    from fxservices.mlflow_server.__main__ import build_command

    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", "sqlite:///x.db")
    monkeypatch.setitem(sys.modules, "prometheus_flask_exporter", None)  # import blocked
    cmd = build_command()
    assert "--expose-prometheus" not in cmd and "--serve-artifacts" in cmd


@pytest.mark.unit
def test_backend_store_uri_from_a_secret_file(monkeypatch, tmp_path):
    from fxservices.mlflow_server.__main__ import backend_store_uri

    secret = tmp_path / "mlflow_backend_store_uri"
    secret.write_text("postgresql://mlflow:s3cret@postgres:5432/mlflow")
    monkeypatch.delenv("MLFLOW_BACKEND_STORE_URI", raising=False)
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI_FILE", str(secret))
    assert backend_store_uri() == "postgresql://mlflow:s3cret@postgres:5432/mlflow"
    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI_FILE", str(tmp_path / "absent"))
    env = service_env(MLFLOW_BACKEND_STORE_URI_FILE=str(tmp_path / "absent"))
    env.pop("MLFLOW_BACKEND_STORE_URI", None)
    r = subprocess.run([sys.executable, "-m", "fxservices.mlflow_server"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "MLFLOW_BACKEND_STORE_URI_FILE=" in r.stderr and "absent" in r.stderr


@pytest.mark.unit
def test_missing_backend_store_is_a_clear_error():
    env = service_env()
    env.pop("MLFLOW_BACKEND_STORE_URI", None)
    r = subprocess.run([sys.executable, "-m", "fxservices.mlflow_server"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "MLFLOW_BACKEND_STORE_URI is not set" in r.stderr


@pytest.mark.unit
def test_bad_worker_count_is_a_clear_error():
    env = service_env(MLFLOW_BACKEND_STORE_URI="sqlite:///x.db", MLFLOW_WORKERS="many")
    r = subprocess.run([sys.executable, "-m", "fxservices.mlflow_server"], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "MLFLOW_WORKERS='many' is not an integer" in r.stderr


@pytest.mark.integration
def test_server_serves_artifacts_and_metrics(mlflow_server, tmp_path, monkeypatch):
    import urllib.request

    import mlflow

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server["uri"])

    log = mlflow_server["log"].read_text()
    assert "fx-mlflow: exec" in log and "--serve-artifacts" in log
    client = mlflow.MlflowClient(tracking_uri=mlflow_server["uri"])
    exp = client.create_experiment("launcher-test")
    run = client.create_run(exp)
    src = tmp_path / "hello.txt"
    src.write_text("through the server")
    client.log_artifact(run.info.run_id, str(src))
    # the client never touched the volume: the server stored the file in its destination
    stored = list(mlflow_server["artifacts"].rglob("hello.txt"))
    assert len(stored) == 1 and stored[0].read_text() == "through the server"
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
    out = tmp_path / "back"
    out.mkdir()
    got = client.download_artifacts(run.info.run_id, "hello.txt", str(out))
    assert open(got).read() == "through the server"
    with urllib.request.urlopen(mlflow_server["uri"] + "/metrics", timeout=10) as r:
        body = r.read().decode()
    assert r.status == 200 and "mlflow_http_request_total" in body, body[:500]
