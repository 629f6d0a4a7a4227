"""Per-worker micro-cache of the inference API's hot path: online features and response bodies."""
from __future__ import annotations

import asyncio
import logging
import time
from datetime import datetime
from typing import Callable, Optional

from fxservices.inference.features import FeaturesUnavailable

log = logging.getLogger("fxservices.inference")

Read = Callable[[str], "tuple[dict, Optional[datetime]]"]


class PredictCache:
    """Per-worker micro-cache of the hot path.

    Online features of a pair are re-read from Feast when older than FX_FEATURE_CACHE_SECONDS
    (default 1 s; 0 reads on every request): they change only when the DAG materializes.
    A due re-read runs in the background while requests get the features read before
    (stale-while-revalidate), and one read per pair is in flight at a time: when every
    request that found them stale read Feast itself, dozens of reads piled up each second
    and showed as p99 latency. A prediction is a pure function of (model version, features),
    so its response body is kept until either changes.
    """

    def __init__(self, ttl: float):
        self.ttl = ttl
        self.features: dict[str, tuple[float, dict, Optional[datetime]]] = {}
        self.reading: dict[str, asyncio.Future] = {}
        self.bodies: dict[tuple, bytes] = {}

    async def features_for(self, pair: str, read: Read) -> tuple[dict, Optional[datetime]]:
        """(values, timestamp) of `pair`; `read(pair)` (blocking) fetches them from Feast.
        Raises FeaturesUnavailable when there are none to serve."""
        hit = self.features.get(pair)
        if hit is not None and self.ttl > 0:
            if time.monotonic() - hit[0] >= self.ttl and pair not in self.reading:
                self._start_read(pair, read)
            return hit[1], hit[2]
        future = self.reading.get(pair) or self._start_read(pair, read)
        return await asyncio.shield(future)

    def prime(self, pair: str, values: dict, ts: Optional[datetime]) -> None:
        """Features read outside a request (a model about to be served): the next request
        for the pair finds them here instead of waiting for a Feast read."""
        self.features[pair] = (time.monotonic(), values, ts)

    def _start_read(self, pair: str, read: Read) -> asyncio.Future:
        future = asyncio.get_running_loop().run_in_executor(None, read, pair)
        self.reading[pair] = future

        def done(f: asyncio.Future) -> None:
            self.reading.pop(pair, None)
            exc = f.exception()  # also marks it retrieved when no request awaits it
            if exc is None:
                values, ts = f.result()
                self.features[pair] = (time.monotonic(), values, ts)
            elif isinstance(exc, FeaturesUnavailable):
                self.features.pop(pair, None)  # the next request answers the 503
            else:
                log.error("reading features of %s failed: %r", pair, exc)

        future.add_done_callback(done)
        return future
