"""The task base class: retry what is transient with backoff, dead-letter what is not."""

from __future__ import annotations

import json
import logging
import time

import psycopg2
import redis
from celery import Task, signals

from ..common.db import Database
from ..common.errors import InputError
from ..common.settings import DEAD_LETTER_KEY
from .celery_app import settings

log = logging.getLogger("bsopt.tasks")
TRANSIENT = (psycopg2.OperationalError, psycopg2.InterfaceError, redis.ConnectionError, ConnectionError)

_db: Database | None = None
_redis: redis.Redis | None = None


def db() -> Database:
    global _db
    if _db is None:
        _db = Database(settings.database_url, maxconn=4)
    return _db


def redis_client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.redis_url)
    return _redis


class BsoptTask(Task):
    autoretry_for = TRANSIENT
    retry_backoff = 2          # up to 2, 4, 8, ... 60 seconds (full jitter: a random part of it)
    retry_backoff_max = 60
    retry_jitter = True
    max_retries = 8            # with jitter the expected window is ~2 minutes of an outage
    acks_late = True

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        # Reached once retries are exhausted, or at once for a non-transient error.
        entry = {"task": self.name, "id": task_id, "args": args, "kwargs": kwargs,
                 "error": f"{type(exc).__name__}: {exc}", "retries": self.request.retries,
                 "poison": isinstance(exc, (InputError, TypeError, KeyError, ValueError)),
                 "at": time.time()}
        try:
            redis_client().lpush(DEAD_LETTER_KEY, json.dumps(entry, default=str))
        except redis.RedisError as err:  # the broker is gone too: the log is all there is
            log.error("cannot dead-letter %s (%s): %s", task_id, err, entry)
        log.error("dead-lettered %s %s: %s", self.name, task_id, entry["error"])


def dead_letter_refused(entry: dict) -> None:
    """Record a message the worker refused to run (never raises: it runs in the consumer)."""
    entry = {"args": None, "kwargs": None, "retries": 0, "poison": True, "at": time.time(), **entry}
    try:
        redis_client().lpush(DEAD_LETTER_KEY, json.dumps(entry, default=str))
    except redis.RedisError as err:
        log.error("cannot dead-letter refused message %s (%s): %s", entry.get("id"), err, entry)
        return
    log.error("dead-lettered refused message %s (%s): %s", entry.get("id"), entry.get("task"), entry["error"])


@signals.task_unknown.connect
def _on_unknown_task(sender=None, name=None, id=None, message=None, exc=None, **_):
    # Celery has rejected the message (and marked the id failed): keep a record of it
    dead_letter_refused({"task": name, "id": id, "error": f"unknown task: {type(exc).__name__}: {exc}",
                         "headers": dict(getattr(message, "headers", None) or {})})


@signals.task_rejected.connect
def _on_rejected(sender=None, message=None, exc=None, **_):
    headers = dict(getattr(message, "headers", None) or {})
    dead_letter_refused({"task": headers.get("task"), "id": headers.get("id"), "headers": headers,
                         "error": f"rejected: {type(exc).__name__}: {exc}" if exc else "rejected: unknown message format"})
