"""Scrape requests between the API and the scrapers: a Redis stream read by a consumer group.

Why not a list (RPUSH / BLPOP): Redis hands a pushed item to the client that has been blocked
longest, and counts it delivered once the reply is in that client's socket. A scraper on a host
that vanished (a node cut off a Swarm, a VM paused) stays "blocked" in Redis' eyes until TCP gives
up on it, minutes later; it is the oldest waiter, so it gets the next request, and the request is
gone. A stream keeps every delivered entry in the group's pending list until the consumer
acknowledges it (XACK, after the run); an entry left pending longer than `claim_after` seconds is
taken over by a live scraper (XAUTOCLAIM), so a request reaches a scraper that runs it.

A long run is not taken over while its scraper lives, as long as one run takes less than
`claim_after` (each page is bounded by its own timeout); if one does, the request runs twice,
which is harmless: a second run of the same board updates its rows, never duplicates them.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass

import redis

STREAM = "bsopt:scrape-stream"
GROUP = "scrapers"
# the stream keeps the newest requests only: statuses live an hour, and nobody reads older entries
MAX_ENTRIES = 10_000


def push(rds: redis.Redis, request_id: str) -> str:
    """Queue one request (the API). Returns the entry's id."""
    return rds.xadd(STREAM, {"id": request_id}, maxlen=MAX_ENTRIES, approximate=True).decode()


def consumer_name() -> str:
    """Unique per scraper process: a container's hostname is its id, unique across a Swarm."""
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass
class Request:
    entry: str       # the stream entry's id, acknowledged after the run
    id: str          # the scrape's id (its status key), as POST /scrapes returned it


class Consumer:
    """A scraper's end: take the next request (an orphaned one first), acknowledge it after the run."""

    def __init__(self, rds: redis.Redis, name: str | None = None, claim_after: float = 60.0):
        self.rds, self.name, self.claim_after_ms = rds, name or consumer_name(), int(claim_after * 1000)
        self._group_ready = False

    def next(self, block: float) -> Request | None:
        """An entry another consumer took and never acknowledged within `claim_after`, else a new
        one, waiting up to `block` seconds; None when there is none."""
        try:
            return self._claim() or self._read(block)
        except redis.ResponseError as exc:
            # Redis restarted without its data, or the stream was deleted: the group is gone
            if "NOGROUP" not in str(exc):
                raise
            self._group_ready = False
            return self._claim() or self._read(block)

    def ack(self, request: Request) -> None:
        self.rds.xack(STREAM, GROUP, request.entry)

    def _ensure_group(self) -> None:
        if self._group_ready:
            return
        try:
            # from the stream's start: requests queued before the first scraper came up are served
            self.rds.xgroup_create(STREAM, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        self._group_ready = True

    def _claim(self) -> Request | None:
        self._ensure_group()
        reply = self.rds.xautoclaim(STREAM, GROUP, self.name, self.claim_after_ms, "0-0", count=1)
        return _first(reply[1])

    def _read(self, block: float) -> Request | None:
        self._ensure_group()
        reply = self.rds.xreadgroup(GROUP, self.name, {STREAM: ">"}, count=1,
                                    block=max(1, int(block * 1000)))
        return _first(reply[0][1]) if reply else None


def _first(entries) -> Request | None:
    for entry, fields in entries:
        if fields:      # an entry trimmed away (MAXLEN) while pending comes back without fields
            return Request(entry.decode(), fields[b"id"].decode())
    return None
