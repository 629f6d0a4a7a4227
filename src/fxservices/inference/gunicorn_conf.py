"""gunicorn settings hooks for the inference API (gunicorn --config python:fxservices.inference.gunicorn_conf).

Empties the prometheus multiprocess directory when the master starts, and marks exited workers
dead so their live gauges disappear. Command-line flags still set bind/workers/worker class.
"""
from __future__ import annotations

import os

from fxservices.inference.metrics import DEFAULT_MULTIPROC_DIR

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", DEFAULT_MULTIPROC_DIR)


def on_starting(server):  # master, before workers are forked
    from fxservices.inference.metrics import clear_dir

    clear_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])
