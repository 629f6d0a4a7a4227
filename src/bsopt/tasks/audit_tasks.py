"""The audit trail: who asked for what, written to Postgres by the worker."""

from __future__ import annotations

from ..common.errors import InputError, Problem
from .base import BsoptTask, db
from .celery_app import app


@app.task(name="bsopt.tasks.audit", base=BsoptTask)
def audit(event: str, detail: dict | None = None) -> dict:
    if not isinstance(event, str) or not event.strip() or len(event) > 200:
        raise InputError(Problem("event", "must be a non-empty string", "a string of 1 to 200 characters", event))
    if detail is not None and not isinstance(detail, dict):
        raise InputError(Problem("detail", "must be an object", "a JSON object or null", detail))
    return {"id": db().audit(event, detail or {})}
