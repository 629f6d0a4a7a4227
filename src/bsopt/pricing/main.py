"""neural-pricing: `uvicorn bsopt.pricing.main:app` (the seed's entry point; the model code is
bsopt.ml). Serves the model CURRENT names in the model store and swaps to a new one as soon as a
training job publishes it (a watcher thread checks the pointer file every second; a request
uses whichever network object it picked up, so a swap never mixes two models in one answer).

POST /price answers the network's price, the analytic Black-Scholes-Merton price and the error.
"""

from __future__ import annotations

import logging
import os
import threading
from contextlib import asynccontextmanager
from datetime import date

import numpy as np
from typing import Any, Optional, Union

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from prometheus_client import Gauge
from pydantic import BaseModel, ConfigDict
from servicekit.web import Detail

from ..common import http
from ..common.settings import Settings
from ..ml.model import M_RANGE, V_RANGE, ModelStore, Network
from . import bsm
from .bodies import NeuralPriceRequest

log = logging.getLogger("bsopt.pricing")
MODEL_VERSION = Gauge("bsopt_neural_model_version", "version of the neural pricer being served")
POLL_SECONDS = float(os.environ.get("BSOPT_MODEL_POLL_SECONDS", "1"))


class Serving:
    def __init__(self, store: ModelStore):
        self.store = store
        self.net: Network | None = None
        self.stamp = None
        self.last_error: str | None = None
        self._stop = threading.Event()

    def refresh(self) -> None:
        stamp = self.store.current_stamp()
        if stamp is None or stamp == self.stamp:
            return
        try:
            net = self.store.load()
        except (OSError, ValueError, KeyError) as exc:
            self.last_error = f"cannot load {self.store.dir}: {exc}"
            log.error(self.last_error)
            return
        self.stamp, self.net, self.last_error = stamp, net, None
        if net is not None:
            MODEL_VERSION.set(net.version)
            log.info("serving neural pricer v%s (held-out MAE %.4f %% of spot)", net.version,
                     (net.meta or {}).get("heldout_mae_pct_spot", float("nan")))

    def watch(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self.refresh()

    def stop(self) -> None:
        self._stop.set()


settings = Settings.from_env()
serving = Serving(ModelStore(settings.model_dir))


@asynccontextmanager
async def lifespan(app: FastAPI):
    serving.refresh()
    thread = threading.Thread(target=serving.watch, name="model-watch", daemon=True)
    thread.start()
    yield
    serving.stop()


app = FastAPI(title="bsopt neural pricing", version="1.0", lifespan=lifespan)
http.install(app, "neural-pricing")

NO_MODEL = ("no neural pricer trained yet: POST /jobs {\"task\": \"train_neural_pricer\"} to the API, "
            "then retry")
Numbers = Union[float, list[float]]


class Health(BaseModel):
    status: str


class Ready(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    ready: bool
    model_version: Optional[int] = None
    reason: Optional[str] = None


class ModelInfo(BaseModel):
    version: int
    meta: Optional[dict[str, Any]] = None
    versions: list[int]


class NeuralPrice(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    price: Numbers
    analytic: Numbers
    error: Numbers
    model_version: int
    extrapolated: bool


_NO_MODEL = {503: {"model": Detail, "description": "no model trained yet"}}


@app.get("/health", response_model=Health)
def health():
    return {"status": "ok"}


@app.get("/ready", response_model=Ready, response_model_exclude_none=True, responses={503: {"model": Ready, "description": "no model yet"}})
def ready():
    net = serving.net
    if net is None:
        return JSONResponse({"ready": False, "reason": serving.last_error or
                             f"no trained model yet in {serving.store.dir} (submit a train_neural_pricer job)"},
                            status_code=503)
    return {"ready": True, "model_version": net.version}


@app.get("/model", response_model=ModelInfo, responses=_NO_MODEL)
def model():
    net = serving.net
    if net is None:
        return JSONResponse({"detail": NO_MODEL}, status_code=503)
    return {"version": net.version, "meta": net.meta, "versions": serving.store.versions()}


@app.post("/price", response_model=NeuralPrice, responses=_NO_MODEL, openapi_extra={"requestBody": {
    "required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PriceRequest"}}}}})
async def price(request: Request):
    body = await http.json_body(request)
    net = serving.net
    if net is None:
        return JSONResponse({"detail": NO_MODEL}, status_code=503)
    f = bsm.check(spot=http.numbers(body, "spot", bsm.LIMITS["spot"][1]),
                  strike=http.numbers(body, "strike", bsm.LIMITS["strike"][1]),
                  years=http.years_to_expiry(body, date.today()),
                  rate=http.numbers(body, "rate", bsm.LIMITS["rate"][1], 0.0),
                  volatility=http.numbers(body, "volatility", bsm.LIMITS["volatility"][1]),
                  dividend_yield=http.numbers(body, "dividend_yield", bsm.LIMITS["dividend_yield"][1], 0.0))
    call = bsm.is_call(http.option_types(body))
    bsm.same_shape(f, type=call)
    # one shape for all, `type` included: the network broadcasts only the numeric fields
    args = tuple(np.broadcast_arrays(f["spot"], f["strike"], f["years"], f["rate"], f["volatility"],
                                     f["dividend_yield"], call))
    neural = net.price(*args)
    analytic = bsm.price(*args)
    scalar = all(np.ndim(a) == 0 for a in args)
    out = {"price": neural, "analytic": analytic, "error": neural - analytic}
    if scalar:
        out = {k: float(np.asarray(v).ravel()[0]) for k, v in out.items()}
    else:
        out = {k: np.atleast_1d(v).tolist() for k, v in out.items()}
    # outside the box the network was trained on, its answer is an extrapolation: say so
    m = np.log(f["spot"] / f["strike"]) + (f["rate"] - f["dividend_yield"]) * f["years"]
    v = f["volatility"] * np.sqrt(f["years"])
    outside = ~((m >= M_RANGE[0]) & (m <= M_RANGE[1]) & (v >= V_RANGE[0]) & (v <= V_RANGE[1]))
    return http.fast_json({**out, "model_version": net.version, "extrapolated": bool(np.any(outside))})



def _request_model_in_openapi() -> None:
    """The body /price parses by hand, as a model in components."""
    build = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        js = NeuralPriceRequest.model_json_schema(ref_template="#/components/schemas/{model}")
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        comps.update(js.pop("$defs", {}))
        comps["PriceRequest"] = js
        return schema

    app.openapi = openapi


_request_model_in_openapi()
