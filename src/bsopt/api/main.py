"""The bsopt API: `uvicorn bsopt.api.main:app` on 8000 (the seed's `src.api.main:app`).

REST: POST /price (prices and Greeks, one option or a columnar batch), POST /implied-volatility,
GET /quotes (scraped, with implied volatilities, from Postgres), POST /jobs + GET /jobs/{id}
(work for the Celery worker), GET /dead-letters, POST /scrapes + GET /scrapes/{id} (ask the
scraper for a run now). GraphQL: POST /graphql (quotes, price). Ops: /health (the process),
/ready (Postgres and Redis answer), /metrics.

Bad input gets a 422 naming the field, the reason and what is accepted, and a body over 4 MB a
413 before it is read (the service kit, servicekit.web, via bsopt.common.http). Every body is
described in the OpenAPI by the models of bsopt.api.models; GraphQL queries are bounded in
size, depth, aliases and fields (bsopt.api.graphql, docs/contracts.md).
"""

from __future__ import annotations

import json
import time
import uuid
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

import numpy as np
import psycopg2
import redis
from fastapi import FastAPI, Path, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from servicekit.web import Detail

from ..common import http
from ..common.db import Database
from ..common.errors import InputError, Problem
from ..common import scrape_requests
from ..common.settings import DEAD_LETTER_KEY, SCRAPE_STATUS, Settings
from ..pricing import bsm
from ..tasks.celery_app import TASKS
from ..tasks.celery_app import app as celery_app
from . import models as m
from .graphql import run_query

settings = Settings.from_env()
db = Database(settings.database_url)
rds = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)


@asynccontextmanager
async def lifespan(app: FastAPI):
    yield
    db.close()


app = FastAPI(title="bsopt API", version="1.0", lifespan=lifespan)
http.install(app, "api")


def _fields(body: dict[str, Any]) -> dict[str, np.ndarray]:
    L = bsm.LIMITS
    return bsm.check(
        spot=http.numbers(body, "spot", L["spot"][1]),
        strike=http.numbers(body, "strike", L["strike"][1]),
        years=http.years_to_expiry(body, date.today()),
        rate=http.numbers(body, "rate", L["rate"][1], 0.0),
        volatility=http.numbers(body, "volatility", L["volatility"][1]),
        dividend_yield=http.numbers(body, "dividend_yield", L["dividend_yield"][1], 0.0))


def _out(arrays: dict[str, np.ndarray], scalar: bool) -> dict[str, Any]:
    if scalar:
        return {k: float(np.asarray(v).ravel()[0]) for k, v in arrays.items()}
    return {k: np.atleast_1d(v).tolist() for k, v in arrays.items()}


def _body(model) -> dict:
    """The OpenAPI of a body the handler parses itself (see bsopt.api.models)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}}


def _models_in_openapi(*models) -> None:
    """Put the request models the handlers parse by hand into components (FastAPI lists only
    those it validates itself)."""
    build = app.openapi

    def openapi():
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        comps = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in models:
            js = model.model_json_schema(ref_template="#/components/schemas/{model}")
            comps.update(js.pop("$defs", {}))
            comps[model.__name__] = js
        return schema

    app.openapi = openapi


@app.get("/health", response_model=m.Health)
async def health():
    return {"status": "ok"}


@app.get("/ready", response_model=m.Ready, response_model_exclude_none=True, responses={503: {"model": m.Ready, "description": "Postgres or Redis unreachable"}})
def ready():
    problems = {}
    try:
        db.ping()
    except psycopg2.Error as exc:
        problems["postgres"] = str(exc).strip()
    try:
        rds.ping()
    except redis.RedisError as exc:
        problems["redis"] = str(exc)
    if problems:
        return JSONResponse({"ready": False, "unreachable": problems}, status_code=503)
    return {"ready": True}


@app.post("/price", response_model=m.PriceResponse, openapi_extra=_body(m.PriceRequest))
async def price(request: Request):
    """Body: spot, strike, volatility, years | expiry, [rate, dividend_yield, type, greeks].
    Each a number (or ISO date / "call"|"put") or a list; lists are priced element-wise."""
    body = await http.json_body(request)
    one = _one_option(body)
    if one is not None:
        return http.fast_json({**one, "count": 1})
    f = _fields(body)
    call = bsm.is_call(http.option_types(body))
    bsm.same_shape(f, type=call)
    scalar = all(np.ndim(v) == 0 for v in f.values()) and np.ndim(call) == 0
    args = (f["spot"], f["strike"], f["years"], f["rate"], f["volatility"], f["dividend_yield"], call)
    if http.flag(body, "greeks", True):
        out = bsm.greeks(*args).__dict__
    else:
        out = {"price": bsm.price(*args)}
    return http.fast_json({**_out(out, scalar), "count": int(np.size(out["price"]))})


def _one_option(body: dict[str, Any]) -> dict[str, float] | None:
    """One option given as plain numbers and `years`: priced without numpy. Anything else
    (lists, `expiry`, a bad value) goes the general way, which also names what is wrong."""
    names = ("spot", "strike", "years", "volatility")
    try:
        vals = {n: body[n] for n in names}
        vals["rate"], vals["dividend_yield"] = body.get("rate", 0.0), body.get("dividend_yield", 0.0)
    except KeyError:
        return None
    kind = body.get("type", "call")
    if kind not in ("call", "put") or body.get("expiry") is not None or body.get("greeks", True) is not True \
            or not all(type(v) in (int, float) for v in vals.values()):
        return None
    try:
        vals = {k: float(v) for k, v in vals.items()}
    except OverflowError:
        return None  # the general way names the field
    bsm.check_one(**vals)
    try:
        return bsm.greeks_one(vals["spot"], vals["strike"], vals["years"], vals["rate"], vals["volatility"],
                              vals["dividend_yield"], kind == "call")
    except (ZeroDivisionError, OverflowError, ValueError):
        return None  # magnitudes at the edge of float: numpy's way names the problem


@app.post("/implied-volatility", response_model=m.IVResponse, openapi_extra=_body(m.IVRequest))
async def implied_volatility(request: Request):
    body = await http.json_body(request)
    L = bsm.LIMITS
    target = http.numbers(body, "price", "the option's market price, a number greater than 0")
    f = bsm.check(spot=http.numbers(body, "spot", L["spot"][1]),
                  strike=http.numbers(body, "strike", L["strike"][1]),
                  years=http.years_to_expiry(body, date.today()),
                  rate=http.numbers(body, "rate", L["rate"][1], 0.0),
                  dividend_yield=http.numbers(body, "dividend_yield", L["dividend_yield"][1], 0.0))
    call = bsm.is_call(http.option_types(body))
    bsm.same_shape(f, type=call, price=target)
    sigma = bsm.implied_vol_checked(target, f["spot"], f["strike"], f["years"], f["rate"],
                                    f["dividend_yield"], call)
    scalar = np.ndim(target) == 0 and all(np.ndim(v) == 0 for v in f.values())
    return http.fast_json(_out({"implied_volatility": sigma}, scalar))


@app.get("/quotes", response_model=m.Quotes)
def quotes(underlying: str | None = Query(None, pattern="^[A-Za-z0-9.^_-]{1,32}$",
                                              description="a ticker symbol, e.g. BSOPT"),
           limit: int = Query(500, ge=1, le=10_000)):
    rows = db.quotes(underlying=underlying, limit=limit)
    return {"count": len(rows), "quotes": rows}


@app.post("/graphql", response_model=m.GraphQLResponse, openapi_extra=_body(m.GraphQLRequest),
          responses={400: {"model": m.GraphQLResponse,
                           "description": "a query that does not parse, validate, or keep within the limits"}})
async def graphql(request: Request):
    body = await http.json_body(request)
    query = body.get("query")
    if not isinstance(query, str) or not query:
        raise InputError(Problem("query", "is missing or not a string", "a GraphQL query string", query))
    variables = body.get("variables")
    if variables is None:
        variables = {}
    if not isinstance(variables, dict):
        raise InputError(Problem("variables", "is not an object", "a JSON object of variable values", variables))
    out, status = await run_query(query, variables, {"db": db})
    return JSONResponse(out, status_code=status)


@app.post("/jobs", status_code=202, response_model=m.JobAccepted, openapi_extra=_body(m.JobRequest))
async def submit_job(request: Request):
    body = await http.json_body(request)
    task = body.get("task")
    if not isinstance(task, str) or task not in TASKS:
        raise InputError(Problem("task", f"unknown task {task!r}", " or ".join(sorted(TASKS)), task))
    args = body.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise InputError(Problem("args", "is not an object", "a JSON object of the task's keyword arguments", args))
    result = await run_in_threadpool(celery_app.send_task, TASKS[task], kwargs=args)
    return {"id": result.id, "task": task, "state": "PENDING", "url": f"/jobs/{result.id}"}


@app.get("/jobs/{job_id}", response_model=m.JobStatus, response_model_exclude_none=True)
def job(job_id: uuid.UUID = Path(description="the id POST /jobs returned")):
    res = celery_app.AsyncResult(str(job_id))
    state = res.state
    out: dict[str, Any] = {"id": str(job_id), "state": state}
    if state == "SUCCESS":
        out["result"] = res.result
    elif state in ("FAILURE", "RETRY"):
        out["error"] = f"{type(res.result).__name__}: {res.result}"
    return out


@app.get("/dead-letters", response_model=m.DeadLetters)
def dead_letters(limit: int = Query(50, ge=1, le=1000, description="how many, newest first")):
    return {"dead_letters": [json.loads(x) for x in rds.lrange(DEAD_LETTER_KEY, 0, limit - 1)]}


@app.post("/scrapes", status_code=202, response_model=m.Scrape)
def request_scrape():
    sid = uuid.uuid4().hex
    rds.set(SCRAPE_STATUS.format(sid), json.dumps({"id": sid, "state": "queued", "queued_at": time.time()}),
            ex=3600)
    scrape_requests.push(rds, sid)
    return {"id": sid, "state": "queued", "url": f"/scrapes/{sid}"}


@app.get("/scrapes/{sid}", response_model=m.Scrape, response_model_exclude_none=True,
         responses={404: {"model": Detail, "description": "no such scrape (statuses are kept for an hour)"}})
def scrape_status(sid: str = Path(pattern="^[0-9a-f]{32}$", description="the id POST /scrapes returned")):
    raw = rds.get(SCRAPE_STATUS.format(sid))
    if raw is None:
        return JSONResponse({"detail": f"no scrape {sid!r}: use the id POST /scrapes returned "
                                       "(statuses are kept for an hour)"}, status_code=404)
    return json.loads(raw)


_models_in_openapi(m.PriceRequest, m.IVRequest, m.GraphQLRequest, m.JobRequest)
