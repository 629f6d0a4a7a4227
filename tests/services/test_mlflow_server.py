"""The fx-mlflow launcher: command line from the environment, and a real server through it."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import service_env


@pytest.mark.unit
def test_command_line_from_environment(monkeypatch):
    from fxservices.mlflow_server.settings import server

    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", "postgresql://mlflow:pw@postgres:5432/mlflow")
    monkeypatch.delenv("MLFLOW_ARTIFACTS_DESTINATION", raising=False)
    for name in ("MLFLOW_HOST", "MLFLOW_PORT", "MLFLOW_WORKERS", "MLFLOW_PROMETHEUS_DIR"):
        monkeypatch.delenv(name, raising=False)
    srv = server()
    assert srv.command[1:3] == ["-m", "gunicorn"] and srv.command[-1] == "fxservices.mlflow_server.app:app"
    args = dict(zip(srv.command[3::1], srv.command[4::1]))
    assert args["-b"] == "0.0.0.0:5000" and args["-w"] == "2"
    # the URI (with its password) is neither on the command line (`ps` shows argv) nor in the
    # workers' environment: app.py opens the stores from the file
    assert not any("pw@" in c for c in srv.command) and not any("pw@" in v for v in srv.env.values())
    assert srv.env["_MLFLOW_SERVER_ARTIFACT_DESTINATION"] == "/data/mlflow-artifacts"
    assert srv.env["_MLFLOW_SERVER_ARTIFACT_ROOT"] == "mlflow-artifacts:/"
    assert srv.env["_MLFLOW_SERVER_SERVE_ARTIFACTS"] == "true"
    # prometheus-flask-exporter is in the mlflow group (the fx-mlflow image and this test env)
    assert srv.env["prometheus_multiproc_dir"] == "/tmp/mlflow-prometheus"


@pytest.mark.unit
def test_no_metrics_without_the_exporter(monkeypatch):
    """An MLflow install without prometheus-flask-exporter: MLflow's server would fail to import
    it at start, so the launcher leaves the exporter's directory unset."""
    from fxservices.mlflow_server.settings import server

    monkeypatch.setenv("MLFLOW_BACKEND_STORE_URI", "sqlite:///x.db")
    monkeypatch.setitem(sys.modules, "prometheus_flask_exporter", None)  # import blocked
    srv = server()
    assert "prometheus_multiproc_dir" not in srv.env and srv.env["_MLFLOW_SERVER_SERVE_ARTIFACTS"] == "true"


@pytest.mark.unit
def test_backend_store_uri_from_a_secret_file(monkeypatch, tmp_path):
    from fxservices.mlflow_server.settings import backend_store_uri

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
    assert "fx-mlflow: exec" in log and "fxservices.mlflow_server.app:app" in log
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


@pytest.mark.integration
def test_the_backend_store_uri_is_in_no_process_environment(mlflow_server):
    """The fixture hands the URI over in a file, as Compose does: neither the launcher's gunicorn
    nor a worker has it in /proc/<pid>/environ or on its command line."""
    from pathlib import Path

    uri = mlflow_server["backend_store_uri"].encode()
    pids, todo = [], [mlflow_server["pid"]]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        for task in Path(f"/proc/{pid}/task").iterdir():
            todo += [int(c) for c in (task / "children").read_text().split()]
    assert len(pids) >= 2, pids                     # gunicorn and its worker
    for pid in pids:
        for part in ("environ", "cmdline"):
            assert uri not in Path(f"/proc/{pid}/{part}").read_bytes(), (pid, part)
