"""What the two FastAPI services share (the inference API and the FinGPT service): the request
body limit, the request metrics and the error answers, installed together by `install`.

Errors answer like the project's FxError: what was wrong (`reason`), where (`field`) and what
to do (`accepted`: what the service takes instead), in one JSON shape for every 413 and 422:

    {"detail": "invalid request: pair: ...; accepted: ...",
     "errors": [{"field": "pair", "reason": "...", "accepted": "...", "type": "..."}]}

The middlewares are plain ASGI (no BaseHTTPMiddleware), so they run the same under uvicorn
alone and under gunicorn's uvicorn workers, and never buffer a response.

Imports FastAPI and Starlette: only the services that run them import this module (the Airflow
images ship fxservices.common without them).
"""
from __future__ import annotations

import logging
import time
from typing import Any, Mapping, Optional, Sequence

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.routing import Match

from fxservices.common.config import env_int

MAX_BODY_ENV = "FX_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 64 * 1024
BODY_ACCEPTED = "a JSON object (Content-Type: application/json)"


def max_body_bytes() -> int:
    """FX_MAX_BODY_BYTES, default 64 KiB (ConfigError naming the variable when malformed)."""
    return env_int(MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES, minimum=1)


def error_response(status: int, errors: Sequence[Mapping[str, Any]], *,
                   prefix: str = "invalid request", **extra) -> JSONResponse:
    """The services' one error shape: `detail` for people, `errors` for programs."""
    parts = [f"{e['field']}: {e['reason']}" + (f"; accepted: {e['accepted']}"
                                               if e.get("accepted") else "")
             for e in errors]
    return JSONResponse(status_code=status, content={
        "detail": f"{prefix}: " + " | ".join(parts), "errors": list(errors), **extra})


# ---- request body limit --------------------------------------------------------------------

class BodyTooLarge(Exception):
    """Raised from `receive` once a streamed body passes the limit (the 413 is already sent)."""


def _content_length(scope) -> Optional[int]:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server rejects a malformed length before we see it
    return None


class BodyLimit:
    """Answer 413 to a request whose body is over `max_bytes`, before the app reads it whole.

    A declared Content-Length over the limit is refused before any body is received. A body
    without one (chunked transfer) is counted as the app receives it: the chunk that passes the
    limit is the last one handed over; the 413 goes out at once and the app, which sees its
    `receive` fail, has whatever it answers dropped.

    The connection stays open: uvicorn drops the rest of a finished request's body as it
    arrives, without keeping it. `Connection: close` would be worse: a client still sending
    (most send the whole body before reading) gets a TCP reset and never sees the 413
    (measured with http.client and a 50 MB body: reset with close, 413 in 0.03 s without).
    """

    def __init__(self, app, max_bytes: Optional[int] = None):
        self.app = app
        self.max_bytes = max_body_bytes() if max_bytes is None else max_bytes

    def _errors(self, size: str) -> list[dict]:
        return [{"field": "body", "type": "body_too_large",
                 "reason": f"the request body is {size}, over the limit of "
                           f"{self.max_bytes} bytes",
                 "accepted": f"a body of at most {self.max_bytes} bytes ({MAX_BODY_ENV}); "
                             "send less per request"}]

    async def _reject(self, send, size: str) -> None:
        response = error_response(413, self._errors(size), prefix="request body too large")
        await send({"type": "http.response.start", "status": 413,
                    "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(send, f"{declared} bytes (Content-Length)")
            return

        received = 0
        started = False  # the app's response has begun: too late for a 413
        rejected = False  # we answered 413: drop what the app sends after that

        async def counting_receive():
            nonlocal received, rejected
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    if not started and not rejected:
                        rejected = True
                        await self._reject(send, f"at least {received} bytes (streamed without Content-Length)")
                    raise BodyTooLarge(received)
            return message

        async def guarded_send(message):
            nonlocal started
            if rejected:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except BodyTooLarge:
            if not rejected:
                raise  # the response had started; the server ends the connection


# ---- request metrics -----------------------------------------------------------------------

class MetricsMiddleware:
    """Count and time every HTTP request by method, route template and status.

    `requests` is a prometheus Counter labelled (method, route, status), `latency` a Histogram
    labelled (method, route): each service creates its own (names, multiprocess mode). A
    request answered before routing (a 413 from BodyLimit) is put under the route it was for,
    found in `routes`; a path no route matches is "unmatched" (no label per unknown path).
    """

    def __init__(self, app, *, requests, latency, routes: Sequence = ()):
        self.app = app
        self.requests = requests
        self.latency = latency
        self.routes = routes

    def _template(self, scope) -> str:
        route = scope.get("route")
        if route is None:
            for candidate in self.routes:
                match, _ = candidate.matches(scope)
                if match == Match.FULL:
                    route = candidate
                    break
        return getattr(route, "path", None) or "unmatched"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            method = scope.get("method", "GET")
            template = self._template(scope)
            self.latency.labels(method, template).observe(time.perf_counter() - start)
            self.requests.labels(method, template, str(status)).inc()


# ---- error answers -------------------------------------------------------------------------

def _field(err: Mapping[str, Any]) -> str:
    if err.get("type") == "json_invalid":
        return "body"  # loc is ("body", <byte offset>)
    return ".".join(str(x) for x in err.get("loc", ()) if x != "body") or "body"


def validation_errors(exc: RequestValidationError,
                      accepted: Mapping[str, str]) -> list[dict]:
    """One entry per pydantic error: field (dotted, without "body"), reason, what is accepted
    (looked up by the field's first part: "texts.3" -> accepted["texts"])."""
    out = []
    for err in jsonable_encoder(exc.errors(), custom_encoder={Exception: str}):
        field = _field(err)
        top = field.split(".", 1)[0]
        reason = str(err.get("msg") or "invalid")
        reason = reason.removeprefix("Value error, ")  # our validators' own sentences
        out.append({"field": field, "reason": reason, "type": err.get("type"),
                    "accepted": accepted.get(top) or accepted.get("body") or BODY_ACCEPTED})
    return out


def install(app: FastAPI, *, requests, latency, accepted: Mapping[str, str],
            log: logging.Logger, max_bytes: Optional[int] = None) -> None:
    """Give `app` the shared error answers, the body limit and the request metrics.

    `accepted` maps a body field (and "body") to what the service accepts there, in words.
    Middleware order, outermost first: metrics (so 413s are counted), body limit, the app.
    """
    accepted = dict(accepted)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return error_response(422, validation_errors(exc, accepted))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500,
                            content={"detail": f"internal error: {type(exc).__name__} "
                                               "(the service log has the traceback)"})

    app.add_middleware(BodyLimit, max_bytes=max_bytes)
    app.add_middleware(MetricsMiddleware, requests=requests, latency=latency,
                       routes=app.router.routes)

