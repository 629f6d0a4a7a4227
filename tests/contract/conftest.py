"""The contract tier: every HTTP API we ship, each a real server on a 127.0.0.1 port (uvicorn
from .venv with the services' code from src/), with the real Postgres and Redis it needs, and
schemathesis run against its OpenAPI (tests/contract/test_openapi.py).

Servers here are session-scoped subprocesses; the shared ones (Redis, MLflow, the tiny FinGPT
model) are tests/services' fixtures. schemathesis lives in its own environment, .venv/contract
(requirements/contract.txt, installed by scripts/bootstrap.sh under ./fx check), because it
needs a newer pytest and Werkzeug than the harness and the services pin.
"""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from services.conftest import (  # noqa: F401  (fixtures shared with tests/services)
    REPO, SRC, free_port, mlflow_server, redis_server, service_env, stop, tiny, wait_for_port, wait_http)

PGBIN = Path("/usr/lib/postgresql/15/bin")
CONTRACT_VENV = REPO / ".venv" / "contract"


def schemathesis_cli() -> Path:
    exe = CONTRACT_VENV / "bin" / "st"
    if not exe.exists():
        pytest.skip(f"schemathesis not installed in {CONTRACT_VENV} "
                    "(./fx check installs requirements/contract.txt there)")
    return exe


class Server:
    """A uvicorn subprocess serving `app` on a free 127.0.0.1 port; its log is kept for errors."""

    def __init__(self, app: str, log: Path, env: dict, ready: str = "/health", timeout: float = 120):
        self.port = free_port()
        self.log = log
        cmd = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port",
               str(self.port), "--no-access-log"]
        self.proc = subprocess.Popen(cmd, env=service_env(**env), stdout=log.open("w"),
                                     stderr=subprocess.STDOUT)
        try:
            wait_http(self.url + ready, timeout, self.proc, log)
        except Exception:
            stop(self.proc)
            raise

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        stop(self.proc)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory):
    """A throwaway PostgreSQL 15 (Debian's postgresql-15) with a `bsopt` superuser and database,
    trust authentication on 127.0.0.1 only."""
    if not (PGBIN / "postgres").exists():
        pytest.skip("PostgreSQL 15 not installed (scripts/bootstrap.sh installs postgresql-15)")
    user = pwd.getpwnam("postgres") if os.getuid() == 0 else pwd.getpwuid(os.getuid())
    # not under pytest's tmp_path: that is private to this user (0700) and postgres runs as another
    root = Path(tempfile.mkdtemp(prefix="fx-contract-pg-"))
    os.chmod(root, 0o755)
    if os.getuid() == 0:
        os.chown(root, user.pw_uid, user.pw_gid)
    prefix = ["runuser", "-u", user.pw_name, "--"] if os.getuid() == 0 else []
    env = {"PATH": f"{PGBIN}:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(root)}
    subprocess.run(prefix + [str(PGBIN / "initdb"), "-D", str(root / "data"), "-U", "bsopt",
                             "-A", "trust", "--no-sync"],
                   env=env, check=True, capture_output=True)
    port = free_port()
    log = root / "postgres.log"
    proc = subprocess.Popen(prefix + [str(PGBIN / "postgres"), "-D", str(root / "data"), "-p", str(port),
                                      "-h", "127.0.0.1", "-k", str(root), "-c", "fsync=off"],
                            env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, 60, proc, log)
        deadline = time.monotonic() + 30
        while subprocess.run([str(PGBIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                             capture_output=True).returncode != 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"postgres on {port} does not accept connections: {log}")
            time.sleep(0.2)
        subprocess.run([str(PGBIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "bsopt",
                        "bsopt"], check=True, capture_output=True)
        yield f"postgresql://bsopt@127.0.0.1:{port}/bsopt"
    finally:
        pid_file = root / "data" / "postmaster.pid"
        if pid_file.exists():  # runuser forks: signal the postmaster itself
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGINT)
            except ProcessLookupError:
                pass
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(root, ignore_errors=True)


def seed_quotes(database_url: str) -> int:
    """The quote board's 54 quotes in Postgres, as a scrape leaves them, so the API's /quotes
    and GraphQL answers carry real rows (and schemathesis checks them against the models)."""
    from datetime import datetime, timezone

    from bsopt.board.app import board
    from bsopt.common.db import Database

    b = board()
    rows = [{"source": "contract-test", "underlying": b["underlying"], "option_type": q["type"],
             "strike": q["strike"], "expiry": q["expiry"], "bid": q["bid"], "ask": q["ask"],
             "underlying_price": b["spot"], "rate": b["rate"], "dividend_yield": b["dividend_yield"],
             "scraped_at": datetime.now(timezone.utc)} for q in b["quotes"]]
    db = Database(database_url)
    try:
        return len(db.upsert_quotes(rows))
    finally:
        db.close()


@pytest.fixture(scope="session")
def bsopt_api(postgres, redis_server, tmp_path_factory):
    seed_quotes(postgres)
    redis_url = f"redis://127.0.0.1:{redis_server['port']}/0"
    server = Server("bsopt.api.main:app", tmp_path_factory.mktemp("bsopt-api") / "api.log",
                    {"BSOPT_DATABASE_URL": postgres, "BSOPT_REDIS_URL": redis_url}, ready="/ready")
    yield server
    server.close()


@pytest.fixture(scope="session")
def neural_pricing(tmp_path_factory):
    from bsopt.ml import model

    models = tmp_path_factory.mktemp("bsopt-models")
    net, metrics = model.train(samples=600, hidden=(8,), seed=3, max_iter=60)
    model.ModelStore(models).publish(net, metrics)
    server = Server("bsopt.pricing.main:app", models / "pricing.log",
                    {"BSOPT_MODEL_DIR": models}, ready="/ready")
    yield server
    server.close()


@pytest.fixture(scope="session")
def quote_board(tmp_path_factory):
    server = Server("bsopt.board.app:app", tmp_path_factory.mktemp("board") / "board.log", {})
    yield server
    server.close()


@pytest.fixture(scope="session")
def fingpt(tiny, tmp_path_factory):
    # smaller bounds than the defaults (64 texts of 8,000 characters): the OpenAPI states
    # whatever they are set to, and schemathesis's largest valid bodies then run in milliseconds
    # on the CPU instead of seconds
    server = Server("fxservices.fingpt.service:app", tmp_path_factory.mktemp("fingpt") / "fingpt.log",
                    {"FINGPT_BASE_MODEL": tiny["base"], "FINGPT_ADAPTER": tiny["adapter"],
                     "FINGPT_MAX_TEXTS": 8, "FINGPT_MAX_CHARS": 500})
    yield server
    server.close()


@pytest.fixture(scope="session")
def fx_inference(redis_server, mlflow_server, tmp_path_factory):
    """The inference API serving a model the pipeline trained and registered (real MLflow,
    real Feast online store in Redis), so /predict and /ready answer 200."""
    data = tmp_path_factory.mktemp("fxdata-contract")
    env = {"FX_DATA_DIR": str(data), "REDIS_HOST": redis_server["host"],
           "REDIS_PORT": str(redis_server["port"]), "MLFLOW_TRACKING_URI": mlflow_server["uri"],
           "FX_MODEL_NAME": "fx-direction-contract", "FX_MODEL_ALIAS": "serving",
           "FX_PAIRS": "EUR_USD,GBP_USD", "FEAST_USAGE": "False",
           "PROMETHEUS_MULTIPROC_DIR": str(data / "prom")}
    with pytest.MonkeyPatch.context() as mp:
        for k, v in env.items():
            mp.setenv(k, v)
        mp.delenv("OANDA_API_TOKEN", raising=False)
        mp.delenv("FEAST_REPO_PATH", raising=False)
        from fxservices.pipeline import tasks

        tasks.run_all()
    (data / "prom").mkdir(exist_ok=True)
    server = Server("fxservices.inference.app:app", data / "inference.log", env, ready="/ready")
    yield server
    server.close()
