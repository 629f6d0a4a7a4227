"""FinGPT sentiment API (port 8001): GET /health, POST /sentiment, GET /metrics.

Input is bounded: a body over FX_MAX_BODY_BYTES (default 64 KiB) gets 413 before it is read;
at most FINGPT_MAX_TEXTS texts (default 64) of at most FINGPT_MAX_CHARS characters each
(default 8000) per request, else 422 naming the limit (fxservices.common.web's error shape).

The model loads once at start-up (FINGPT_BASE_MODEL + FINGPT_ADAPTER). If it cannot load, the
process stays up and answers 503 with the reason on /health and /sentiment, so the error is
visible in the health check and the logs instead of a restart loop.
"""
from __future__ import annotations

import logging
import threading
from contextlib import asynccontextmanager
from typing import Optional

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from prometheus_client import Counter, Histogram
from pydantic import BaseModel, Field, field_validator

from fxservices.common.config import env_int
from fxservices.common.logs import setup_logging
from fxservices.common.web import install
from servicekit.web import Detail, metrics_route

setup_logging()
log = logging.getLogger("fxservices.fingpt")

# read once at start-up; a malformed value stops the service with a ConfigError naming it
MAX_TEXTS = env_int("FINGPT_MAX_TEXTS", 64, minimum=1)
MAX_CHARS = env_int("FINGPT_MAX_CHARS", 8000, minimum=1)
ACCEPTED_TEXTS = (f"a list of 1 to {MAX_TEXTS} non-empty strings (FINGPT_MAX_TEXTS), each at "
                  f"most {MAX_CHARS} characters (FINGPT_MAX_CHARS)")


class SentimentRequest(BaseModel):
    # the bounds are checked by _bounded (its 422s name the variables); the schema states them
    texts: list[str] = Field(..., min_length=1, description="news headlines or sentences",
                             json_schema_extra={"maxItems": MAX_TEXTS, "items": {
                                 "type": "string", "minLength": 1, "maxLength": MAX_CHARS,
                                 "pattern": "\\S"}})

    @field_validator("texts")
    @classmethod
    def _bounded(cls, texts: list[str]) -> list[str]:
        if len(texts) > MAX_TEXTS:
            raise ValueError(f"{len(texts)} texts, over the limit of {MAX_TEXTS} per request "
                             "(FINGPT_MAX_TEXTS)")
        for i, t in enumerate(texts):
            if not t.strip():
                raise ValueError(f"texts[{i}] is empty")
            if len(t) > MAX_CHARS:
                raise ValueError(f"texts[{i}] has {len(t)} characters, over the limit of "
                                 f"{MAX_CHARS} (FINGPT_MAX_CHARS)")
        return texts


class SentimentItem(BaseModel):
    label: str
    score: float


class Health(BaseModel):
    status: str
    model: Optional[dict] = Field(None, description="base model, adapter, device")
    detail: Optional[str] = None


_UNAVAILABLE = {503: {"model": Detail, "description": "the model is loading or failed to load (the reason)"}}


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

REQUESTS = Counter("fx_fingpt_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("fx_fingpt_request_duration_seconds", "HTTP latency", ["method", "route"])
TEXTS = Counter("fx_fingpt_texts_total", "Texts classified", ["label"])


@asynccontextmanager
async def lifespan(_app: FastAPI):
    import anyio

    await anyio.to_thread.run_sync(state.load)
    yield


app = FastAPI(title="FinGPT sentiment API", version="1.0.0", lifespan=lifespan)
install(app, requests=REQUESTS, latency=LATENCY, log=log, accepted={
    "texts": ACCEPTED_TEXTS,
    "body": 'a JSON object such as {"texts": ["Euro rises as the ECB hikes rates"]} '
            "(Content-Type: application/json)",
})


def _unavailable() -> JSONResponse:
    msg = "the model is still loading" if state.loading else (state.error or "model not loaded")
    return JSONResponse(status_code=503, content={"status": "unavailable", "detail": msg})


@app.get("/health", response_model=Health, response_model_exclude_none=True, responses=_UNAVAILABLE)
def health():
    if state.processor is None:
        return _unavailable()
    return {"status": "ok", "model": state.processor.info()}


@app.post("/sentiment", response_model=list[SentimentItem], responses=_UNAVAILABLE)
def sentiment(req: SentimentRequest):
    if state.processor is None:
        return _unavailable()
    results = state.processor.classify(req.texts)
    for r in results:
        TEXTS.labels(r.label).inc()
    return [r.as_dict() for r in results]


def _render() -> tuple[bytes, str]:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    return generate_latest(), CONTENT_TYPE_LATEST


metrics_route(app, _render)
