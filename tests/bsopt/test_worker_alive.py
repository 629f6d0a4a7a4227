"""The worker's liveness file (bsopt.tasks.alive) and the health check that reads it
(compose/bsopt.yml), against a real Celery worker, a real redis-server and bash: the worker
touches the file while it consumes, stops while Redis is gone, starts again when it is back; the
check passes on a fresh file and fails on a stale or missing one."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from fxstack.poll import TimedOut, poll

pytestmark = pytest.mark.integration
pytest.importorskip("celery")
pytest.importorskip("redis")
from bsopt.tasks import alive  # noqa: E402
from services.conftest import free_port, start_redis, stop  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
SRC = REPO / "src"
CHECK = yaml.safe_load((REPO / "compose" / "bsopt.yml").read_text())["services"]["worker"]["healthcheck"]


def _check_on(path: Path) -> int:
    """The compose health check's command, run by this machine's bash on `path`."""
    kind, *argv = CHECK["test"]
    assert kind == "CMD" and argv[:2] == ["bash", "-c"]
    script = argv[2].replace("$$", "$")
    assert str(alive.ALIVE) in script, "the check reads another file than the worker touches"
    return subprocess.run(["bash", "-c", script.replace(str(alive.ALIVE), str(path))]).returncode


def test_the_check_passes_on_a_fresh_file_and_fails_on_a_stale_or_missing_one(tmp_path):
    f = tmp_path / "alive"
    assert _check_on(f) != 0
    f.touch()
    assert _check_on(f) == 0
    # older than three touches: a worker that missed them is cut off or stuck
    stale = time.time() - 6 * alive.TOUCH_EVERY_S
    os.utime(f, (stale, stale))
    assert _check_on(f) != 0


class Redis:
    """A redis-server on a fixed port that can be killed and started again there."""

    def __init__(self, d: Path):
        self.port, self.dir, self.proc = free_port(), d, None

    def start(self):
        self.proc = start_redis(self.port, self.dir)

    def kill(self):
        self.proc.kill()
        self.proc.wait()


def _mtime(f: Path) -> int | None:
    try:
        return f.stat().st_mtime_ns
    except FileNotFoundError:
        return None


def _wait_for_touch(f: Path, after: int | None, timeout: float) -> int:
    def touched() -> int | None:
        now = _mtime(f)
        return now if now is not None and now != after else None

    try:
        return poll(touched, timeout=timeout, interval=0.1)
    except TimedOut:
        pytest.fail(f"{f} not touched within {timeout:.0f} s")


def test_a_worker_touches_the_file_only_while_it_reaches_the_broker(tmp_path):
    redis = Redis(tmp_path)
    redis.start()
    f = tmp_path / "worker.alive"
    env = {**os.environ, "PYTHONPATH": str(SRC), "BSOPT_WORKER_ALIVE_FILE": str(f),
           "BSOPT_REDIS_URL": f"redis://127.0.0.1:{redis.port}/0"}
    log = tmp_path / "worker.log"
    worker = subprocess.Popen([sys.executable, "-m", "celery", "-A", "bsopt.tasks.celery_app", "worker",
                               "--concurrency", "1", "--hostname", "alive-test@%h", "--loglevel", "INFO"],
                              env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        first = _wait_for_touch(f, None, 60)
        _wait_for_touch(f, first, 3 * alive.TOUCH_EVERY_S)       # again, on the timer

        redis.kill()
        time.sleep(1)                                            # a touch already on its way
        cut = _mtime(f)
        time.sleep(3 * alive.TOUCH_EVERY_S)
        assert _mtime(f) == cut, "touched while the broker was gone"

        redis.start()
        _wait_for_touch(f, cut, 60)                              # reconnected: touching again
        assert worker.poll() is None, log.read_text()[-2000:]
    finally:
        stop(worker)
        if redis.proc.poll() is None:
            redis.kill()
