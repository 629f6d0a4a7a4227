"""gunicorn settings hooks for the inference API (gunicorn --config python:fxservices.inference.gunicorn_conf).

Empties the prometheus multiprocess directory when the master starts, and marks exited workers
dead so their live gauges disappear. Command-line flags still set bind and worker class; a flag
given on the command line wins over what is set here.

  FX_API_WORKERS     worker processes (default 2)
  FX_API_ACCESS_LOG  1 writes one access-log line per request to stdout (default 0)

The access log is off by default because, at a few thousand requests per second, the line per
request costs more CPU outside the container than the request inside it: dockerd and the
containerd shim copy every line into the json-file log (measured: a third of a core at
2,700 req/s, which showed up as p99 latency). Request counts and latencies are in /metrics;
errors are still logged.
"""
from __future__ import annotations

import os

from fxservices.common.config import env_bool, env_int
from fxservices.inference.metrics import DEFAULT_MULTIPROC_DIR

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", DEFAULT_MULTIPROC_DIR)

workers = env_int("FX_API_WORKERS", 2, minimum=1)
# the workers inherit it: /ready counts them against it (fxservices.inference.workers)
os.environ["FX_API_WORKERS"] = str(workers)
accesslog = "-" if env_bool("FX_API_ACCESS_LOG", False) else None


def on_starting(server):  # master, before workers are forked
    from fxservices.inference.metrics import clear_dir

    clear_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])
