"""Scrape requests reach a live scraper, against a real redis-server: also when another scraper's
connection went silent while it waited (its host cut off), the failure that lost a request on a
three-node Swarm when the queue was a list. A silent connection is a TCP relay that stops
relaying but keeps both sockets open, as a host behind a cut link does: Redis still writes to it,
and nothing comes back."""

from __future__ import annotations

import socket
import threading
import time

import pytest

pytestmark = pytest.mark.integration
redis = pytest.importorskip("redis")
from bsopt.common import scrape_requests  # noqa: E402  (imports redis)
from bsopt.scrapers import engine  # noqa: E402
from services.conftest import redis_server  # noqa: E402,F401  (the session's redis-server, as tests/contract)

CLAIM_AFTER = 1.0


@pytest.fixture
def redis_port(redis_server):
    return redis_server["port"]


@pytest.fixture
def rds(redis_port):
    client = redis.Redis(port=redis_port)
    client.delete(scrape_requests.STREAM)     # the server is the session's: only this key is ours
    return client


class SilencedLink:
    """A relay to Redis that can go silent: both sockets stay open, no byte passes any more."""

    def __init__(self, target_port: int):
        self.target, self.silent = target_port, threading.Event()
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            client, _ = self.server.accept()
            upstream = socket.create_connection(("127.0.0.1", self.target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._relay, args=(a, b), daemon=True).start()

    def _relay(self, src, dst):
        src.settimeout(0.05)
        while True:
            if self.silent.is_set():
                time.sleep(0.05)
                continue
            try:
                data = src.recv(65536)
            except socket.timeout:
                continue
            if not data:
                return
            dst.sendall(data)


def _status(rds, sid):
    return rds.get(engine.SCRAPE_STATUS.format(sid))


def test_a_request_taken_by_a_scraper_that_went_silent_reaches_a_live_one(rds, redis_port):
    link = SilencedLink(redis_port)
    lost = scrape_requests.Consumer(redis.Redis(port=link.port), name="cut-off", claim_after=CLAIM_AFTER)
    live = scrape_requests.Consumer(rds, name="live", claim_after=CLAIM_AFTER)
    assert live.next(block=0.01) is None                      # the group exists; nothing queued

    waiting = threading.Thread(target=lambda: lost.next(block=30), daemon=True)
    waiting.start()
    deadline = time.monotonic() + 10                          # the cut-off scraper waits first
    while not any(c["cmd"] == "xreadgroup" and "b" in c["flags"] for c in rds.client_list()):
        assert time.monotonic() < deadline, "the first scraper never waited on the stream"
        time.sleep(0.02)
    link.silent.set()

    scrape_requests.push(rds, "a" * 32)
    started = time.monotonic()
    got = None
    while got is None and time.monotonic() - started < 10:
        got = live.next(block=0.5)
    assert got is not None and got.id == "a" * 32, "the request went to the silent scraper and stayed there"
    # Redis did give it to the silent one first: the live one took it over after CLAIM_AFTER
    assert time.monotonic() - started >= CLAIM_AFTER
    live.ack(got)
    assert rds.xpending(scrape_requests.STREAM, scrape_requests.GROUP)["pending"] == 0


def test_a_request_whose_run_never_finished_runs_again_and_a_finished_one_does_not(rds):
    first = scrape_requests.Consumer(rds, name="crashed", claim_after=CLAIM_AFTER)
    second = scrape_requests.Consumer(rds, name="second", claim_after=CLAIM_AFTER)
    scrape_requests.push(rds, "b" * 32)
    scrape_requests.push(rds, "c" * 32)
    taken = first.next(block=1)
    assert taken.id == "b" * 32
    done = second.next(block=1)
    assert done.id == "c" * 32
    second.ack(done)                                           # finished: never handed out again
    # within CLAIM_AFTER a running request is left to its scraper
    assert second.next(block=0.2) is None
    time.sleep(CLAIM_AFTER)
    again = second.next(block=0.2)                             # the first one died mid-run
    assert again is not None and again.id == "b" * 32
    second.ack(again)
    time.sleep(CLAIM_AFTER)
    assert second.next(block=0.2) is None


def test_the_scraper_loop_serves_requests_queued_before_it_started_and_after_redis_lost_its_data(rds, redis_port):
    scrape_requests.push(rds, "d" * 32)                      # before any scraper: no group yet

    class Runs:
        def __init__(self):
            self.ids = []

        def run(self, request_id=None):
            self.ids.append(request_id)
            if request_id:
                rds.set(engine.SCRAPE_STATUS.format(request_id), "done")

    scraper = Runs()
    consumer = scrape_requests.Consumer(redis.Redis(port=redis_port), name="loop", claim_after=CLAIM_AFTER)
    engine.loop(scraper, consumer, interval=3600, turns=2)
    assert scraper.ids == [None, "d" * 32]                    # the scheduled run, then the request
    assert _status(rds, "d" * 32) == b"done"

    rds.delete(scrape_requests.STREAM)                        # Redis restarted without its data
    scrape_requests.push(rds, "e" * 32)
    engine.loop(scraper, consumer, interval=3600, turns=2)
    assert scraper.ids[-1] == "e" * 32, f"after the group was lost the loop ran {scraper.ids}"
