"""The inference API's per-worker feature cache: one Feast read per pair at a time, stale
features served while a due re-read runs, a pair whose features went away answers 503."""
from __future__ import annotations

import asyncio
import threading
import time

import pytest

from fxservices.inference.cache import PredictCache
from fxservices.inference.features import FeaturesUnavailable

pytestmark = pytest.mark.unit


class Reader:
    """Stands in for Feast's online read; a gate holds it so requests pile up meanwhile."""

    def __init__(self):
        self.calls = 0
        self.gate = threading.Event()
        self.fail = False

    def __call__(self, pair):
        self.calls += 1
        assert self.gate.wait(10)
        if self.fail:
            raise FeaturesUnavailable(f"no online features for pair {pair}")
        return {"f": float(self.calls)}, None


def test_concurrent_misses_share_one_read():
    async def run():
        cache, read = PredictCache(ttl=60), Reader()
        tasks = [asyncio.create_task(cache.features_for("EUR_USD", read)) for _ in range(50)]
        await asyncio.sleep(0.05)
        assert len(cache.reading) == 1 and not any(t.done() for t in tasks)
        read.gate.set()
        results = await asyncio.gather(*tasks)
        assert read.calls == 1 and all(r == ({"f": 1.0}, None) for r in results)

    asyncio.run(run())


def test_stale_features_are_served_while_one_reread_runs():
    async def run():
        cache, read = PredictCache(ttl=0.05), Reader()
        read.gate.set()
        assert await cache.features_for("EUR_USD", read) == ({"f": 1.0}, None)
        read.gate.clear()
        time.sleep(0.06)
        # due: every request gets the old values at once, and a single re-read starts
        for _ in range(20):
            assert await cache.features_for("EUR_USD", read) == ({"f": 1.0}, None)
        assert "EUR_USD" in cache.reading
        read.gate.set()
        await cache.reading["EUR_USD"]
        await asyncio.sleep(0)  # the done-callback runs on the loop
        assert read.calls == 2  # one re-read for the twenty requests
        assert await cache.features_for("EUR_USD", read) == ({"f": 2.0}, None)

    asyncio.run(run())


def test_features_that_went_away_give_the_503_on_the_next_request():
    async def run():
        cache, read = PredictCache(ttl=0.01), Reader()
        read.gate.set()
        await cache.features_for("EUR_USD", read)
        time.sleep(0.02)
        read.fail = True
        await cache.features_for("EUR_USD", read)  # stale answer; the re-read fails
        with pytest.raises(FeaturesUnavailable):
            await cache.reading["EUR_USD"]
        await asyncio.sleep(0)
        with pytest.raises(FeaturesUnavailable):
            await cache.features_for("EUR_USD", read)

    asyncio.run(run())


def test_zero_ttl_reads_on_every_request():
    async def run():
        cache, read = PredictCache(ttl=0), Reader()
        read.gate.set()
        for i in range(1, 4):
            assert await cache.features_for("EUR_USD", read) == ({"f": float(i)}, None)

    asyncio.run(run())
