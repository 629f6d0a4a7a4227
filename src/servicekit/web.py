"""The FastAPI part of the service kit: `install(app, ...)` gives a service the error answers,
the request body limit, the request metrics and the OpenAPI description of all three.

- 422 for bad input, whatever found it: FastAPI's validation (pydantic), an `InputError` raised
  by the service's own parsing, or a body that is not JSON at all (FastAPI answers a body that
  is not UTF-8 with a bare 400; here it is a 422 naming the body like any other bad body).
- 413 for a body over the limit, before the app reads it whole.
- Both in servicekit.problems' shape; a 500 says only the exception's type (the log has the rest).
- Every operation's OpenAPI lists the 422 (and, where it takes a body, the 413) with the
  ErrorBody model, so a client can generate code for the errors as for the answers.

The middlewares are plain ASGI (no BaseHTTPMiddleware): they run the same under uvicorn alone
and under gunicorn's uvicorn workers, never buffer a response, and cost microseconds.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Mapping, Optional, Sequence

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException
from starlette.routing import Match

from .problems import InputError, Problem, error_body, short

BODY_ACCEPTED = "a JSON object (Content-Type: application/json)"
# What FastAPI says when the body is not decodable at all (not UTF-8): its 400 becomes our 422.
_FASTAPI_BODY_PARSE = "There was an error parsing the body"


class ErrorItem(BaseModel):
    field: str = Field(description="the field at fault, dotted (`texts.3`, `volatility[2]`); `body` for the whole body")
    reason: str = Field(description="what is wrong with it")
    accepted: str = Field(description="what the service accepts there instead")
    got: Any = Field(None, description="the value received, shortened to 200 characters; null when absent")


class ErrorBody(BaseModel):
    """Every 413 and 422 of our services."""
    detail: str = Field(description="the errors in one sentence, for people")
    errors: list[ErrorItem] = Field(description="one entry per bad field, for programs")


class Detail(BaseModel):
    """Other errors (404, 405, 500, 503): one sentence saying what and what to do."""
    detail: str


def error_response(status: int, problems: Sequence[Problem | Mapping[str, Any]], *,
                   prefix: str = "invalid request", headers: Optional[Mapping[str, str]] = None) -> JSONResponse:
    return JSONResponse(status_code=status, content=error_body(problems, prefix=prefix), headers=headers)


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

    def __init__(self, app, max_bytes: int, setting: str = ""):
        self.app = app
        self.max_bytes = max_bytes
        self.setting = setting  # the variable that sets the limit, named in the answer

    def _problem(self, size: str, got: int) -> Problem:
        where = f" ({self.setting})" if self.setting else ""
        return Problem("body", f"the request body is {size}, over the limit of {self.max_bytes} bytes",
                       f"a body of at most {self.max_bytes} bytes{where}; send less per request", got)

    async def _reject(self, send, size: str, got: int) -> None:
        response = error_response(413, [self._problem(size, got)], prefix="request body too large")
        await send({"type": "http.response.start", "status": 413, "headers": response.raw_headers})
        await send({"type": "http.response.body", "body": response.body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await self._reject(send, f"{declared} bytes (Content-Length)", declared)
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
                        await self._reject(send, f"at least {received} bytes (streamed without "
                                                 "Content-Length)", received)
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
    return ".".join(str(x) for x in err.get("loc", ()) if x not in ("body", "query", "path")) or "body"


def validation_problems(exc: RequestValidationError, accepted: Mapping[str, str]) -> list[Problem]:
    """One Problem per pydantic error: field (dotted, without "body"), reason, what is accepted
    (looked up by the field's first part: "texts.3" -> accepted["texts"]), the value received."""
    out = []
    for err in jsonable_encoder(exc.errors(), custom_encoder={Exception: str}):
        field = _field(err)
        top = field.split(".", 1)[0]
        reason = str(err.get("msg") or "invalid").removeprefix("Value error, ")
        got = None if err.get("type") in ("missing", "json_invalid") else err.get("input")
        where = (err.get("loc") or ("body",))[0]
        if where in ("query", "path", "header"):
            default = f"the {where} parameter `{field}` as the OpenAPI describes it (GET /openapi.json)"
        else:
            default = accepted.get("body") or BODY_ACCEPTED
        out.append(Problem(field, reason, accepted.get(top) or default, short(got)))
    return out


def install(app: FastAPI, *, requests, latency, max_bytes: int, log: logging.Logger,
            accepted: Optional[Mapping[str, str]] = None, body_setting: str = "") -> None:
    """Give `app` the kit's error answers, body limit, request metrics and their OpenAPI.

    `accepted` maps a body field (and "body") to what the service accepts there, in words;
    `body_setting` names the variable that sets `max_bytes`. Middleware order, outermost
    first: metrics (so 413s are counted), body limit, the app.
    """
    accepted = dict(accepted or {})

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError):
        return error_response(422, validation_problems(exc, accepted))

    @app.exception_handler(InputError)
    async def _input(request: Request, exc: InputError):
        return error_response(422, exc.problems)

    @app.exception_handler(HTTPException)
    async def _http(request: Request, exc: HTTPException):
        if exc.status_code == 400 and exc.detail == _FASTAPI_BODY_PARSE:
            return error_response(422, [Problem("body", "is not JSON text (not UTF-8)",
                                                accepted.get("body") or BODY_ACCEPTED)])
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse(status_code=500, content={
            "detail": f"internal error: {type(exc).__name__} (the service log has the traceback)"})

    app.add_middleware(BodyLimit, max_bytes=max_bytes, setting=body_setting)
    app.add_middleware(MetricsMiddleware, requests=requests, latency=latency, routes=app.router.routes)
    _document_errors(app, max_bytes)


def metrics_route(app: FastAPI, render: Callable[[], tuple[bytes, str]]) -> None:
    """GET /metrics: Prometheus' text format, documented as such (not as JSON)."""

    @app.get("/metrics", response_class=Response, summary="Prometheus metrics",
             responses={200: {"description": "Prometheus text exposition format",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}})
    def metrics() -> Response:
        body, content_type = render()
        return Response(content=body, media_type=content_type)


def _document_errors(app: FastAPI, max_bytes: int) -> None:
    """Add the kit's 413 and 422 (ErrorBody) to every operation of the app's OpenAPI."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (ErrorBody, Detail):
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(body.pop("$defs", {}))
            schemas[model.__name__] = body
        ref = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for item in schema.get("paths", {}).values():
            for method, op in item.items():
                if method not in ("get", "post", "put", "patch", "delete"):
                    continue
                responses = op.setdefault("responses", {})
                if op.get("parameters") or op.get("requestBody"):
                    responses["422"] = {"description": "bad input: field, reason, what is accepted",
                                        "content": ref}
                if op.get("requestBody"):
                    responses["413"] = {"description": f"body over {max_bytes} bytes", "content": ref}
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi
