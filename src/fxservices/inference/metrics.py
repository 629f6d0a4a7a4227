"""Prometheus metrics of the inference API, multi-process safe under gunicorn.

prometheus_client's multiprocess mode needs PROMETHEUS_MULTIPROC_DIR before the metrics are
created: this module sets it (default /tmp/fx-inference-prometheus) and creates the directory
if absent. gunicorn_conf.py empties it when the master starts and marks dead workers.
Import this module before anything else that may import prometheus_client.
fxservices.common.web.MetricsMiddleware fills REQUESTS and LATENCY (app.py installs it).
"""
from __future__ import annotations

import os

DEFAULT_MULTIPROC_DIR = "/tmp/fx-inference-prometheus"


def _multiproc_dir() -> str:
    path = (os.environ.get("PROMETHEUS_MULTIPROC_DIR")
            or os.environ.get("prometheus_multiproc_dir") or DEFAULT_MULTIPROC_DIR)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    os.makedirs(path, exist_ok=True)
    return path


MULTIPROC_DIR = _multiproc_dir()

from prometheus_client import (  # noqa: E402
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

# prometheus_client picks its value class when first imported: if something imported it before
# the directory was set, switch to the multiprocess class for the metrics created below.
if "MultiProcess" not in values.ValueClass.__name__:
    values.ValueClass = values.get_value_class()

REQUESTS = Counter("fx_api_requests_total", "HTTP requests by route template and status",
                   ["method", "route", "status"])
LATENCY = Histogram("fx_api_request_duration_seconds", "HTTP request latency by route template",
                    ["method", "route"],
                    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.25,
                             0.5, 1.0, 2.5, 5.0))
PREDICTIONS = Counter("fx_predictions_total", "Predictions served", ["pair", "prediction"])
MODEL_VERSION = Gauge("fx_model_version_served",
                      "Version of the registered model being served (0 before one is loaded)",
                      ["model", "alias"], multiprocess_mode="mostrecent")


def render() -> tuple[bytes, str]:
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def clear_dir(path: str = MULTIPROC_DIR) -> None:
    """Remove stale per-process files (call in the gunicorn master before workers start)."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            try:
                os.remove(os.path.join(path, name))
            except FileNotFoundError:
                pass

