"""gunicorn settings hooks for the inference API (gunicorn --config python:fxservices.inference.gunicorn_conf).

Empties the prometheus multiprocess directory when the master starts, and marks exited workers
dead so their live gauges disappear. Command-line flags still set bind and worker class; a flag
given on the command line wins over what is set here.

  FX_API_WORKERS     worker processes (default 2)
  FX_API_ACCESS_LOG  1 writes one access-log line per request to stdout (default 0)
  FX_API_PRELOAD     0 makes each worker import the app and its libraries itself (default 1)

The access log is off by default because, at a few thousand requests per second, the line per
request costs more CPU outside the container than the request inside it: dockerd and the
containerd shim copy every line into the json-file log (measured: a third of a core at
2,700 req/s, which showed up as p99 latency). Request counts and latencies are in /metrics;
errors are still logged.
"""
from __future__ import annotations

import os

from fxservices.common.config import env_bool, env_int
from fxservices.inference.imports import without_type_instrumentation
from fxservices.inference.metrics import DEFAULT_MULTIPROC_DIR

os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", DEFAULT_MULTIPROC_DIR)
without_type_instrumentation()  # before the app (and Feast) is imported, in the master

workers = env_int("FX_API_WORKERS", 2, minimum=1)
# the workers inherit it: /ready counts them against it (fxservices.inference.workers)
os.environ["FX_API_WORKERS"] = str(workers)
accesslog = "-" if env_bool("FX_API_ACCESS_LOG", False) else None
# The master imports the app and the heavy libraries (feast, mlflow, xgboost: 2 s of CPU)
# once, and the workers fork from it with all of that loaded: each worker importing them on
# its own took the two cores for twice as long, and a new container (after a code change)
# served its first prediction that much later. What must not be shared is created after the
# fork, in each worker: the MLflow client, the loaded model, the Feast store and its Redis
# connection (fxservices.inference.app.Services, built on first use; tests/services/
# test_gunicorn.py checks that each worker holds its own).
preload_app = env_bool("FX_API_PRELOAD", True)


def on_starting(server):  # master, before workers are forked (after the app with preload_app)
    from fxservices.inference.metrics import clear_dir

    clear_dir(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    if server.cfg.preload_app:
        import gc

        from fxservices.inference.imports import ensure_imported

        ensure_imported()
        # what the master holds now is never collected, so the workers' collections do not
        # touch (and copy) the shared pages
        gc.collect()
        gc.freeze()


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, os.environ["PROMETHEUS_MULTIPROC_DIR"])
