"""Tests of the services' code (src/fxservices) against real parts on this host: real Redis,
a real MLflow server (sqlite backend), a real PostgreSQL 15, real gunicorn, a tiny real LLaMA.

Service dependencies come from poetry.lock (groups base, fastapi, mlflow, fingpt):
`./fx check` installs requirements/tests.txt and requirements/tests-torch.txt (a CPU torch) into
.venv; system packages redis-server and postgresql-15 come from scripts/bootstrap.sh. Airflow is
not among them: tests/services/requirements-airflow.txt (own venv, FX_TEST_AIRFLOW) for the DAG.
A test whose service dependency does not import is skipped, and the reason names the package.
Test modules import those packages only inside tests and fixtures, so collection never fails.
"""
from __future__ import annotations

import http.client
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable

import pytest

from fxstack.stack.docker_state import free_port  # noqa: F401 (the test modules import it from here)

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
if importlib.util.find_spec("fxservices") is None:
    sys.path.insert(0, str(SRC))

# What each test module needs to import (import name -> pip distribution named in the reason).
DISTRIBUTION = {
    "pandas": "pandas==2.1.0", "numpy": "numpy==1.24.3", "pyarrow": "pyarrow",
    "sklearn": "scikit-learn==1.5.2", "xgboost": "xgboost-cpu==2.1.4",
    "feast": "feast==0.37.1", "redis": "redis==5.0.1", "mlflow": "mlflow==2.16.2",
    "fastapi": "fastapi==0.115.12", "httpx": "httpx", "prometheus_client":
    "prometheus-client==0.19.0", "gunicorn": "gunicorn==23.0.0", "uvicorn": "uvicorn==0.24.0",
    "tenacity": "tenacity==8.5.0",
    "prometheus_flask_exporter": "prometheus-flask-exporter==0.23.2",
    "torch": "torch (CPU build)", "transformers": "transformers==4.48.3",
    "peft": "peft==0.14.0", "tokenizers": "tokenizers", "airflow": "apache-airflow==2.10.5",
}
PIPELINE = ("pandas", "numpy", "pyarrow", "sklearn", "xgboost", "tenacity")
SERVING = PIPELINE + ("feast", "redis", "mlflow", "fastapi", "httpx", "prometheus_client")
NEEDS = {
    "test_common.py": (),
    "test_polling.py": ("tenacity",),
    "test_pipeline.py": PIPELINE,
    "test_dag.py": (),
    "test_feature_repo.py": ("feast", "pandas"),
    "test_mlflow_server.py": ("mlflow", "prometheus_flask_exporter"),
    "test_inference.py": SERVING,
    "test_inference_first_model.py": SERVING,
    "test_gunicorn.py": SERVING + ("gunicorn", "uvicorn"),
    "test_fingpt.py": ("torch", "transformers", "peft", "tokenizers", "fastapi", "httpx",
                       "prometheus_client"),
    "test_fingpt_server.py": ("torch", "transformers", "peft", "tokenizers", "fastapi",
                              "prometheus_client", "uvicorn"),
    "test_postgres_entrypoint.py": (),
}


def missing_modules(names) -> list[str]:
    return [n for n in names if importlib.util.find_spec(n) is None]


def pytest_collection_modifyitems(config, items):
    for item in items:
        if not str(item.path).startswith(str(Path(__file__).parent)):
            continue
        missing = missing_modules(NEEDS.get(item.path.name, ()))
        if missing:
            pkgs = ", ".join(DISTRIBUTION.get(m, m) for m in missing)
            item.add_marker(pytest.mark.skip(
                reason=f"service dependency not importable: {pkgs} "
                       "(./fx check installs them: requirements/tests.txt + tests-torch.txt)"))


# --------------------------------------------------------------------------------------------
# helpers

def switch_interval_at_rest(timeout: float = 10) -> float:
    """sys.getswitchinterval() at a moment no thread is in a polite section
    (fxservices.inference.model.polite_to_the_event_loop): a model cache of an earlier test in
    this process may still be polling, in sections of its own."""
    from fxservices.inference import model

    deadline = time.monotonic() + timeout
    while True:
        with model._polite_lock:
            if model._polite_depth == 0:
                return sys.getswitchinterval()
        assert time.monotonic() < deadline, f"a polite section did not end in {timeout:.0f} s"
        time.sleep(0.005)


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None,
                  log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            text = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode} before listening:\n{text}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    text = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s\n{text}")


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None,
              log: Path | None = None) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            text = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"process exited with {proc.returncode}:\n{text}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except Exception as exc:  # not up yet
            last = exc
        time.sleep(0.3)
    text = log.read_text()[-3000:] if log and log.exists() else ""
    raise TimeoutError(f"{url} not answering 200 after {timeout}s ({last})\n{text}")


def stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def service_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    env["FEAST_USAGE"] = "False"
    env.update({k: str(v) for k, v in extra.items()})
    return env


@contextmanager
def uvicorn_thread(app, **config):
    """A real uvicorn server for `app` on a free 127.0.0.1 port, in a thread of this process
    (lifespan included); yields the port."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", **config))
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"uvicorn did not start on 127.0.0.1:{port}")
        time.sleep(0.05)
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(30)


def post_json(port: int, path: str, body: bytes | Iterable[bytes], *,
              chunked: bool = False) -> tuple[int, dict]:
    """POST raw bytes (one piece with Content-Length, or pieces with chunked transfer) and
    return (status, JSON answer). The whole body is sent before the answer is read, as most
    clients do."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", path, body=body, encode_chunked=chunked,
                     headers={"content-type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"null")
    finally:
        conn.close()


# --------------------------------------------------------------------------------------------
# real servers (session scoped; each started on a free 127.0.0.1 port, stopped at the end)

@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    """A tiny LLaMA + LoRA adapter written by fxservices.fingpt.tiny (nothing downloaded)."""
    from fxservices.fingpt.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny"), seed=7)


def start_redis(port: int, d: Path) -> subprocess.Popen:
    """A redis-server on 127.0.0.1:`port` without persistence, answering; its log in `d`."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    log = d / "redis.log"
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(d)],
                            stdout=log.open("a"), stderr=subprocess.STDOUT)
    wait_for_port(port, 20, proc, log)
    return proc


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    port = free_port()
    proc = start_redis(port, tmp_path_factory.mktemp("redis"))
    yield {"host": "127.0.0.1", "port": port}
    stop(proc)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """MLflow tracking server started through OUR launcher (python -m fxservices.mlflow_server)
    with a sqlite backend and server-side artifacts: the same code path as the fx-mlflow image."""
    if missing_modules(["mlflow"]):
        pytest.skip("service dependency not importable: mlflow==2.16.2")
    d = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    log = d / "mlflow.log"
    uri = f"sqlite:///{d / 'mlflow.db'}"
    (d / "backend_store_uri").write_text(uri)  # a file, as Compose's secret
    env = service_env(MLFLOW_BACKEND_STORE_URI_FILE=str(d / "backend_store_uri"),
                      MLFLOW_ARTIFACTS_DESTINATION=str(d / "artifacts"),
                      MLFLOW_HOST="127.0.0.1", MLFLOW_PORT=port, MLFLOW_WORKERS=1,
                      MLFLOW_PROMETHEUS_DIR=str(d / "prometheus"))
    proc = subprocess.Popen([sys.executable, "-m", "fxservices.mlflow_server"], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 120, proc, log)
    except Exception:
        _stop_group(proc)
        raise
    yield {"uri": f"http://127.0.0.1:{port}", "port": port, "dir": d, "log": log,
           "artifacts": d / "artifacts", "backend_store_uri": uri, "pid": proc.pid}
    _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """The launcher execs gunicorn, whose workers are its children: stop the group."""
    import signal

    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except (subprocess.TimeoutExpired, ProcessLookupError):
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(5)
    else:
        try:
            os.killpg(proc.pid, signal.SIGTERM)  # a leftover gunicorn in the group
        except ProcessLookupError:
            pass
