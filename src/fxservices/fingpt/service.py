"""FinGPT sentiment API (port 8001): GET /health, POST /sentiment, GET /metrics.

The model loads once at start-up (FINGPT_BASE_MODEL + FINGPT_ADAPTER). If it cannot load, the
process stays up and answers 503 with the reason on /health and /sentiment, so the error is
visible in the health check and the logs instead of a restart loop.
"""
from __future__ import annotations

import logging
import threading
import time
from contextlib import asynccontextmanager
from typing import Optional

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field, field_validator

from fxservices.common.logs import setup_logging

setup_logging()
log = logging.getLogger("fxservices.fingpt")

MAX_TEXTS = 64
MAX_CHARS = 8000


class SentimentRequest(BaseModel):
    texts: list[str] = Field(..., min_length=1, max_length=MAX_TEXTS,
                             description="news headlines or sentences")

    @field_validator("texts")
    @classmethod
    def _non_empty(cls, texts: list[str]) -> list[str]:
        for i, t in enumerate(texts):
            if not t.strip():
                raise ValueError(f"texts[{i}] is empty")
            if len(t) > MAX_CHARS:
                raise ValueError(f"texts[{i}] is longer than {MAX_CHARS} characters")
        return texts


class SentimentItem(BaseModel):
    label: str
    score: float


class State:
    def __init__(self) -> None:
        self.processor = None
        self.error: Optional[str] = None
        self.loading = False
        self.lock = threading.Lock()

    def load(self) -> None:
        from fxservices.common.config import ConfigError
        from fxservices.fingpt.processor import from_env

        with self.lock:
            if self.processor is not None:
                return
            self.loading = True
            try:
                self.processor = from_env()
                self.error = None
            except ConfigError as exc:
                self.error = str(exc)
            except Exception as exc:  # model files broken, out of memory, ...
                self.error = f"the model failed to load: {type(exc).__name__}: {exc}"
            finally:
                self.loading = False
            if self.error:
                log.error("FinGPT processor unavailable: %s", self.error)


state = State()
_metrics = None


def _get_metrics():
    global _metrics
    if _metrics is None:
        from prometheus_client import Counter, Histogram

        _metrics = {
            "requests": Counter("fx_fingpt_requests_total", "HTTP requests",
                                ["method", "route", "status"]),
            "latency": Histogram("fx_fingpt_request_duration_seconds", "HTTP latency",
                                 ["method", "route"]),
            "texts": Counter("fx_fingpt_texts_total", "Texts classified", ["label"]),
        }
    return _metrics


@asynccontextmanager
async def lifespan(_app: FastAPI):
    import anyio

    await anyio.to_thread.run_sync(state.load)
    yield


app = FastAPI(title="FinGPT sentiment API", version="1.0.0", lifespan=lifespan)


@app.middleware("http")
async def _count(request: Request, call_next):
    start = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        route = request.scope.get("route")
        path = getattr(route, "path", None) or "unmatched"
        m = _get_metrics()
        m["latency"].labels(request.method, path).observe(time.perf_counter() - start)
        m["requests"].labels(request.method, path, str(status)).inc()


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError):
    errors = jsonable_encoder(exc.errors(), custom_encoder={Exception: str})
    fields = []
    for err in errors:
        if err.get("type") == "json_invalid":
            field = "body"
        else:
            field = ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"
        fields.append({"field": field, "message": err.get("msg"), "type": err.get("type")})
    return JSONResponse(status_code=422, content={
        "detail": "invalid request: " + "; ".join(f"{f['field']}: {f['message']}"
                                                  for f in fields),
        "errors": fields})


def _unavailable() -> JSONResponse:
    msg = "the model is still loading" if state.loading else (state.error or "model not loaded")
    return JSONResponse(status_code=503, content={"status": "unavailable", "detail": msg})


@app.get("/health")
def health():
    if state.processor is None:
        return _unavailable()
    return {"status": "ok", "model": state.processor.info()}


@app.post("/sentiment", response_model=list[SentimentItem])
def sentiment(req: SentimentRequest):
    if state.processor is None:
        return _unavailable()
    results = state.processor.classify(req.texts)
    m = _get_metrics()
    for r in results:
        m["texts"].labels(r.label).inc()
    return [r.as_dict() for r in results]


@app.get("/metrics")
def metrics():
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return Response(content=generate_latest(), media_type=CONTENT_TYPE_LATEST)
