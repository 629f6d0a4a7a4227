"""FX inference API (port 8000; gunicorn with uvicorn workers).

GET /health   the process is up
GET /ready    the model and the feature store are reachable (503 naming what is missing)
GET /metrics  Prometheus (request count + latency per route, model version served)
POST /predict {"pair": "EUR_USD"} -> direction of the next hourly candle

Bodies over FX_MAX_BODY_BYTES (default 64 KiB) get 413 before they are read; errors answer
with field, reason and what is accepted (fxservices.common.web).
"""
from __future__ import annotations

# metrics first: it sets PROMETHEUS_MULTIPROC_DIR before prometheus_client creates any metric
from fxservices.inference import metrics  # isort: skip

import logging
import os
import re
import threading
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Optional

from fastapi import FastAPI
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, field_validator
from servicekit.web import Detail, metrics_route

from fxservices.common.config import ConfigError, FxSettings, env_float
from fxservices.common.logs import setup_logging
from fxservices.common.web import install
from fxservices.inference.cache import PredictCache
from fxservices.inference.features import FeaturesUnavailable, OnlineFeatures
from fxservices.inference import workers
from fxservices.inference.model import LoadedModel, ModelCache, ModelUnavailable

os.environ.setdefault("FEAST_USAGE", "False")
setup_logging()
log = logging.getLogger("fxservices.inference")

# ASCII letters only, checked before upper-casing ("ﬀ".upper() is "FF")
PAIR_PATTERN = r"^\s*[A-Za-z]{3}[_/][A-Za-z]{3}\s*$"
PAIR_RE = re.compile(PAIR_PATTERN)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    pair: str = Field(..., description="Currency pair in OANDA notation", examples=["EUR_USD"],
                      json_schema_extra={"pattern": PAIR_PATTERN})

    @field_validator("pair")
    @classmethod
    def _pair_format(cls, value: str) -> str:
        norm = value.strip().upper().replace("/", "_")
        if not PAIR_RE.match(value):
            raise ValueError("pair must look like EUR_USD (two 3-letter currency codes joined "
                             "by '_')")
        return norm


class PredictResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    pair: str
    prediction: str = Field(description="'up' or 'down': direction of the next hourly close")
    probability: float = Field(description="probability of the predicted direction")
    probability_up: float
    model_name: str
    model_version: str
    model_alias: str
    feature_timestamp: Optional[datetime] = Field(
        description="event time of the online features used (close of the latest candle)")
    features: dict[str, float]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    ready: bool
    checks: Optional[dict] = Field(None, description="model served per worker, feature store")
    detail: Optional[str] = None
    missing: Optional[list[str]] = None


class Services:
    """Lazily built from the environment, once per worker process."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.settings: Optional[FxSettings] = None
        self.models: Optional[ModelCache] = None
        self.features: Optional[OnlineFeatures] = None
        self.config_error: Optional[str] = None

    def ensure(self) -> None:
        if self.settings is not None or self.config_error is not None:
            return
        with self._lock:
            if self.settings is not None or self.config_error is not None:
                return
            try:
                from fxservices.feature_repo.definitions import FEATURE_NAMES

                settings = FxSettings.from_env()
                self.models = ModelCache(
                    settings.mlflow_tracking_uri, settings.model_name, settings.model_alias,
                    ttl_seconds=env_float("FX_MODEL_REFRESH_SECONDS", 10.0, minimum=0.0),
                    default_features=FEATURE_NAMES)
                # freeze what the new model brought; only the young generations are collected
                # first: a full collection holds the GIL for tens of ms while requests are served
                self.models.on_new_model = lambda: _freeze_heap(full=False)
                self.models.on_version_change = workers.record  # /ready speaks for every worker
                self.models.before_serving = lambda model: _prepare(self, model)
                self.features = OnlineFeatures(settings.feast_repo_path, settings.redis_host,
                                               settings.redis_port)
                self.settings = settings
            except ConfigError as exc:
                self.config_error = f"configuration error: {exc}"
                log.error(self.config_error)


services = Services()


def _freeze_heap(full: bool = True) -> None:
    """Move everything alive now (imported libraries, the loaded model) out of the cyclic GC's
    reach: full collections over feast/mlflow/pandas objects otherwise cost tens of ms and show
    up as p99 latency."""
    import gc

    gc.collect(2 if full else 1)
    gc.freeze()


def _prepare(svc: Services, model: LoadedModel) -> None:
    """Before a worker serves a new model version (in the thread that loaded it): read every
    pair's features into the cache and run one prediction. The first request for a pair after
    the first model otherwise waited for Feast's first read in this worker (the registry, the
    Redis connection, pyarrow's conversions) and every request for that pair queued behind
    it: the tail of the first-model window. Pairs without features are left to requests,
    which answer 503 saying so."""
    cache = _predict_cache()
    for pair in svc.settings.pairs:
        try:
            values, ts = svc.features.latest(pair)
        except FeaturesUnavailable:
            continue
        cache.prime(pair, values, ts)
        model.predict_proba_up(values)


def reset_services() -> None:
    """Forget the settings/model/store/caches built from the environment (tests change it)."""
    global services, _cache
    services = Services()
    _cache = None


@asynccontextmanager
async def _lifespan(_app):
    # Per worker, in the background (so /health answers at once): import the heavy libraries
    # and load the served model before the first /predict needs them, then freeze the heap.
    workers.record(None)  # started, serving nothing yet: /ready counts this worker as behind
    threading.Thread(target=_warm_up, name="fx-warm-up", daemon=True).start()
    yield


def _warm_up() -> None:
    from fxservices.inference.imports import ensure_imported

    unregistered = False
    try:
        ensure_imported()
        services.ensure()
        if services.models is not None:
            services.models.get()
    except ModelUnavailable:
        unregistered = True  # nothing registered yet: /predict says what to do meanwhile
    except Exception as exc:  # reported by /ready and /predict when they need them
        log.warning("warm-up failed: %s", exc)
    _freeze_heap()
    if unregistered and services.models is not None:
        services.models.poll_until_loaded()


app = FastAPI(title="FX inference API", version="1.0.0", lifespan=_lifespan,
              description="Direction of the next hourly candle of a currency pair, from the "
                          "Feast online features and the MLflow-registered XGBoost model.")
install(app, requests=metrics.REQUESTS, latency=metrics.LATENCY, log=log, accepted={
    "pair": "a currency pair in OANDA notation, two 3-letter codes joined by '_' "
            "(e.g. EUR_USD; 'eur/usd' is read the same)",
    "body": 'a JSON object such as {"pair": "EUR_USD"} (Content-Type: application/json)',
})


def _error(status: int, message: str, **extra) -> JSONResponse:
    return JSONResponse(status_code=status, content={"detail": message, **extra})


@app.get("/health", response_model=Health)
async def health() -> dict:
    return {"status": "ok"}


@app.get("/ready", response_model=Ready, response_model_exclude_none=True,
         responses={503: {"model": Ready, "description": "what is missing (model, features, configuration)"}})
def ready():
    services.ensure()
    if services.config_error:
        return _error(503, services.config_error, ready=False, missing=[services.config_error])
    checks: dict = {}
    missing: list[str] = []
    try:
        m = services.models.get()
        checks["model"] = {"name": m.name, "alias": m.alias, "version": m.version}
        metrics.MODEL_VERSION.labels(m.name, m.alias).set(float(m.version))
        checks["workers"] = {str(pid): v for pid, v in workers.serving().items()}
        behind = workers.lagging(m.version)
        if behind:  # the next /predict may land on a worker that cannot serve it yet
            missing.append(f"model: not every worker serves version {m.version} yet: "
                           + "; ".join(behind))
    except ModelUnavailable as exc:
        missing.append(f"model: {exc}")
    try:
        checks["features"] = services.features.check()
    except FeaturesUnavailable as exc:
        missing.append(f"features: {exc}")
    if missing:
        return JSONResponse(status_code=503, content={
            "ready": False, "detail": "not ready: " + " | ".join(missing), "missing": missing,
            "checks": checks})
    return {"ready": True, "checks": checks}


metrics_route(app, metrics.render)


_cache: Optional[PredictCache] = None


def _predict_cache() -> PredictCache:
    global _cache
    if _cache is None:
        _cache = PredictCache(env_float("FX_FEATURE_CACHE_SECONDS", 1.0, minimum=0.0))
    return _cache


@app.post("/predict", response_model=PredictResponse,
          responses={404: {"model": Detail, "description": "unknown pair"},
                     503: {"model": Detail, "description": "no model registered or no features yet"}})
async def predict(req: PredictRequest):
    # async: the hot path (loaded model, cached features) never blocks; the slow parts (MLflow
    # alias check, Feast read) run in other threads when due, while requests are answered with
    # what is loaded. Only a worker's first alias check, at its start, is waited for.
    services.ensure()
    if services.config_error:
        return _error(503, services.config_error)
    settings = services.settings
    if req.pair not in settings.pairs:
        return _error(404, f"unknown pair {req.pair}: this API serves "
                           f"{', '.join(settings.pairs)} (FX_PAIRS)")
    models = services.models
    model = models.serve()
    if model is None and not models.checked():
        # the worker's very first alias check (it runs at start): wait for that one only
        try:
            model = await run_in_threadpool(models.get)
        except ModelUnavailable as exc:
            return _error(503, str(exc), missing="model")
    if model is None:
        # Nothing loaded (nothing registered yet, or the registry unreachable): 503 at once.
        # serve() has started a check in the background when one is due; requests that waited
        # for that load were the p99 of the seconds after the first model was registered.
        return _error(503, models.unavailable_reason(), missing="model")
    cache = _predict_cache()
    try:
        values, ts = await cache.features_for(req.pair, services.features.latest)
    except FeaturesUnavailable as exc:
        return _error(503, str(exc), missing="features")
    key = (req.pair, model.version, ts, id(values))
    body = cache.bodies.get(key)
    if body is None:
        p_up = model.predict_proba_up(values)
        prediction = "up" if p_up >= 0.5 else "down"
        resp = PredictResponse(
            pair=req.pair,
            prediction=prediction,
            probability=p_up if prediction == "up" else 1.0 - p_up,
            probability_up=p_up,
            model_name=model.name,
            model_version=model.version,
            model_alias=model.alias,
            feature_timestamp=ts,
            features={k: float(v) for k, v in values.items() if v is not None},
        )
        body = resp.model_dump_json().encode()
        if len(cache.bodies) > 256:
            cache.bodies.clear()
        cache.bodies[key] = body
        prediction_label = prediction
    else:
        prediction_label = "up" if b'"prediction":"up"' in body else "down"
    metrics.MODEL_VERSION.labels(model.name, model.alias).set(float(model.version))
    metrics.PREDICTIONS.labels(req.pair, prediction_label).inc()
    return Response(content=body, media_type="application/json")
