"""The inference API as the fx-fastapi image runs it: its `cmd` (images/fx-fastapi.toml) under
real gunicorn with two uvicorn workers, against real Redis and MLflow. Checks that /metrics
adds up both workers (prometheus multiprocess mode) and the latency under 50 concurrent
clients (bounded load, 127.0.0.1 only)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from fxstack.poll import poll

from .conftest import REPO, free_port, post_json, service_env, wait_http

pytestmark = pytest.mark.integration

MODEL = "fx-direction-gunicorn-test"
REQUESTS = 600
CONCURRENCY = 50


@pytest.fixture(scope="module")
def trained(redis_server, mlflow_server, tmp_path_factory):
    data = tmp_path_factory.mktemp("fxdata-gunicorn")
    env = {"FX_DATA_DIR": str(data), "REDIS_HOST": redis_server["host"],
           "REDIS_PORT": str(redis_server["port"]), "MLFLOW_TRACKING_URI": mlflow_server["uri"],
           "FX_MODEL_NAME": MODEL, "FX_MODEL_ALIAS": "serving", "FX_PAIRS": "EUR_USD,GBP_USD",
           "FEAST_USAGE": "False"}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("OANDA_API_TOKEN", raising=False)
        mp.delenv("FEAST_REPO_PATH", raising=False)
        from fxservices.pipeline import tasks

        result = tasks.run_all()
    return env, result


def _image_cmd(port: int) -> list[str]:
    spec = tomllib.loads((REPO / "images" / "fx-fastapi.toml").read_text())
    cmd = list(spec["cmd"])
    assert cmd[0] == "gunicorn" and "fxservices.inference.app:app" in cmd
    cmd[cmd.index("--bind") + 1] = f"127.0.0.1:{port}"
    exe = Path(os.sys.executable).parent / "gunicorn"
    cmd[0] = str(exe) if exe.exists() else "gunicorn"
    return cmd


def _get(port, method, path, body=None):
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"content-type": "application/json"} if body is not None else {}
    t0 = time.perf_counter()
    conn.request(method, path, body=json.dumps(body) if body is not None else None,
                 headers=headers)
    resp = conn.getresponse()
    data = resp.read()
    dt = time.perf_counter() - t0
    conn.close()
    return resp.status, data, dt


def test_gunicorn_two_workers_metrics_add_up(trained, tmp_path):
    env_extra, result = trained
    prom = tmp_path / "prom"
    prom.mkdir()
    stale = prom / "counter_999999.db"
    stale.write_bytes(b"\0" * 16)  # left by a previous container run
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = service_env(**env_extra, PROMETHEUS_MULTIPROC_DIR=prom,
                      GUNICORN_CMD_ARGS="--config python:fxservices.inference.gunicorn_conf")
    proc = subprocess.Popen(_image_cmd(port), env=env, stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 60, proc, log)
        assert not stale.exists(), "the master did not clear the multiprocess directory"
        version = result["train_register"]["version"]
        # /ready speaks for both workers: 200 once each serves the registered version
        ready = poll(lambda: _ready_body(port), timeout=60, interval=0.2)
        assert ready["checks"]["model"]["version"] == version
        assert len(ready["checks"]["workers"]) == 2, ready
        assert set(ready["checks"]["workers"].values()) == {version}, ready
        _master_preloads_and_workers_connect_on_their_own(proc.pid, ready, int(env_extra["REDIS_PORT"]))
        big = json.dumps({"pair": "EUR_USD", "padding": "x" * 1024 * 1024}).encode()
        status, answer = post_json(port, "/predict", big)  # the body limit, in a real worker
        assert status == 413 and "FX_MAX_BODY_BYTES" in answer["detail"], answer

        # warm both workers up, then a bounded burst from 50 concurrent clients
        for _ in range(20):
            _get(port, "POST", "/predict", {"pair": "EUR_USD"})
        before = _predict_200(_get(port, "GET", "/metrics")[1].decode())
        pairs = ["EUR_USD", "GBP_USD"]
        with ThreadPoolExecutor(CONCURRENCY) as pool:
            results = list(pool.map(
                lambda i: _get(port, "POST", "/predict", {"pair": pairs[i % 2]}),
                range(REQUESTS)))
        statuses = [s for s, _, _ in results]
        assert statuses.count(200) == REQUESTS, set(statuses)
        versions = {json.loads(b)["model_version"] for _, b, _ in results}
        assert versions == {version}
        lat = sorted(dt for _, _, dt in results)
        p50, p99 = lat[len(lat) // 2], lat[int(len(lat) * 0.99) - 1]
        print(f"\n/predict via gunicorn, {CONCURRENCY} concurrent, {REQUESTS} requests: "
              f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")
        # Latency targets are the benchmark's business (bench/), not a test's.

        text = _get(port, "GET", "/metrics")[1].decode()
        assert _predict_200(text) - before == REQUESTS  # both workers' counts, added up
        pids = {p.stem.rsplit("_", 1)[-1] for p in prom.glob("counter_*.db")}
        assert len(pids) >= 2, pids
        assert f'fx_model_version_served{{alias="serving",model="{MODEL}"}} ' \
               f'{float(version)}' in text
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
    assert proc.returncode == 0, log.read_text()[-2000:]


def _master_preloads_and_workers_connect_on_their_own(master: int, ready: dict, redis_port: int) -> None:
    """preload_app (gunicorn_conf): the master has imported the heavy libraries before forking
    (it maps XGBoost's library), but holds no connection of its own: each worker opened its own
    to Redis after the fork (a connection made before it would be one socket shared by all)."""
    maps = Path(f"/proc/{master}/maps").read_text()
    assert "libxgboost" in maps and "libarrow" in maps, "the master did not import the libraries before forking"
    assert {state for state, _ in _tcp_sockets(master)} == {"LISTEN"}, _tcp_sockets(master)
    for pid in ready["checks"]["workers"]:
        remote = {port for state, port in _tcp_sockets(int(pid)) if state == "ESTABLISHED"}
        assert redis_port in remote, f"worker {pid} has no Redis connection of its own: {_tcp_sockets(int(pid))}"


def _tcp_sockets(pid: int) -> list[tuple[str, int]]:
    """(state, remote port) of each TCP socket the process holds (/proc/<pid>/fd, /proc/net/tcp)."""
    states = {"01": "ESTABLISHED", "0A": "LISTEN"}
    by_inode = {}
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            f = line.split()
            by_inode[f[9]] = (states.get(f[3], f[3]), int(f[2].rsplit(":", 1)[1], 16))
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in by_inode:
            held.append(by_inode[target[8:-1]])
    return held


def _ready_body(port: int) -> dict | None:
    status, body, _ = _get(port, "GET", "/ready")
    return json.loads(body) if status == 200 else None


def _predict_200(text: str) -> float:
    key = 'fx_api_requests_total{method="POST",route="/predict",status="200"} '
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(key))
