"""The broker transport of bsopt's Celery app: kombu's Redis transport, except that a message it
cannot even unpack is dead-lettered instead of ending the worker.

kombu turns each list item of a queue into a message envelope (JSON) and decodes its body (base64)
inside the worker's event loop, before Celery sees a message; an item that is not JSON, or whose
body does not decode, raised there and stopped the worker ("Unrecoverable error"), and the item,
already popped, was gone. Here each item is checked first: one that fails is pushed to
`bsopt:dead-letter` (what was wrong, the queue, the raw item cut to 4 KB) and logged, and the loop
goes on with the next. Messages Celery can unpack but not run (an unknown task name) are Celery's
to refuse; bsopt.tasks.base records those.

Selected by `broker_transport` in bsopt.tasks.celery_app (the URL stays redis://).
"""

from __future__ import annotations

import json
import logging
import time

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import Empty
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import loads

from ..common.settings import DEAD_LETTER_KEY

log = logging.getLogger("bsopt.tasks.transport")
RAW_LIMIT = 4096


def envelope_problem(payload, channel) -> str | None:
    """Why kombu could not make a message of `payload` (None: it can)."""
    if not isinstance(payload, dict):
        return f"the item is JSON but not a message envelope (an object), it is {type(payload).__name__}"
    props = payload.get("properties")
    if not isinstance(props, dict) or "delivery_tag" not in props:
        return "the envelope has no properties.delivery_tag"
    if not isinstance(payload.get("headers") or {}, dict):
        return "the envelope's headers are not an object"
    body, encoding = payload.get("body"), props.get("body_encoding")
    if body:
        try:
            channel.decode_body(body, encoding)
        except Exception as exc:  # whatever the codec raises: binascii.Error, TypeError, ...
            return f"the body does not decode as {encoding}: {type(exc).__name__}: {exc}"
    return None


class Channel(kombu_redis.Channel):
    def _unpack(self, raw: bytes, queue: str):
        """The envelope of one queue item, or None once a bad item is dead-lettered."""
        try:
            payload = loads(bytes_to_str(raw))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are both ValueErrors
            problem = f"the item is not JSON: {exc}"
        else:
            problem = envelope_problem(payload, self)
            if problem is None:
                return payload
        self._dead_letter(raw, queue, problem)
        return None

    def _dead_letter(self, raw: bytes, queue: str, problem: str) -> None:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        # the fields of every dead letter (bsopt.tasks.base), plus the queue and the raw item
        entry = {"task": None, "id": None, "args": None, "kwargs": None, "error": f"poison message: {problem}",
                 "retries": 0, "poison": True, "at": time.time(), "queue": queue, "raw": text[:RAW_LIMIT]}
        try:
            with self.conn_or_acquire() as client:
                client.lpush(DEAD_LETTER_KEY, json.dumps(entry))
        except self.connection_errors + self.channel_errors as exc:
            log.error("cannot dead-letter a poison message from %s (%s): %s", queue, exc, entry)
            return
        log.error("dead-lettered a poison message from queue %s: %s", queue, problem)

    def _brpop_read(self, **options):
        # kombu's own read, with _unpack between the reply and the delivery
        try:
            try:
                reply = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()   # the next turn reconnects
                raise
            if not reply:
                raise Empty()
            key, raw = reply
            queue = bytes_to_str(key).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(queue)
            payload = self._unpack(raw, queue)
            if payload is not None:
                self.connection._deliver(payload, queue)
            return True
        finally:
            self._in_poll = None

    def _get(self, queue):
        with self.conn_or_acquire() as client:
            for pri in self.priority_steps:
                key = self._q_for_pri(queue, pri)
                while (raw := client.rpop(key)) is not None:
                    payload = self._unpack(raw, queue)
                    if payload is not None:
                        return payload
            raise Empty()


class Transport(kombu_redis.Transport):
    Channel = Channel
