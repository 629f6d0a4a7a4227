"""The scraper: `python -m bsopt.scrapers.engine` (the seed ran `python src/scrapers/engine.py`).

Playwright for Python drives Debian's `chromium` package through `executable_path`: no browser
is downloaded, at build time or ever (the Playwright CDN is unreachable here, and a download is
no build step we accept). One browser stays up; each run opens a fresh context per target.

A run: load each target (BSOPT_SCRAPE_TARGETS, comma-separated), wait until its script has
rendered the quote rows, read underlying, strike, bid, ask and expiry from the DOM, upsert them
into Postgres (a second run of the same board updates rows, never duplicates them) and enqueue
an implied-volatility job for those quotes. Runs happen every BSOPT_SCRAPE_INTERVAL seconds and
whenever the API queues a request (POST /scrapes; bsopt.common.scrape_requests says why that
queue is a Redis stream and not a list); each run's status is kept in Redis.

Chromium's sandbox: on by default (BSOPT_CHROMIUM_SANDBOX=1). It creates user, PID and network
namespaces, which Docker's default seccomp profile refuses to a container without CAP_SYS_ADMIN;
compose/bsopt.yml runs this service under compose/seccomp/chromium.json, Docker's default plus
those calls (Chromium then applies its own, per-process seccomp-bpf filters to every renderer,
which are narrower than Docker's). Where even that is impossible, BSOPT_CHROMIUM_SANDBOX=0
launches with --no-sandbox and the log says so.

Liveness: the loop touches /tmp/bsopt-scraper.alive on every turn; the health check reads its age.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import date, datetime, timezone
from pathlib import Path

import redis
from playwright.sync_api import sync_playwright

from ..common.db import Database
from ..common import scrape_requests
from ..common.settings import SCRAPE_STATUS, Settings
from ..tasks.celery_app import app as celery_app

log = logging.getLogger("bsopt.scraper")
CHROMIUM = os.environ.get("BSOPT_CHROMIUM", "/usr/bin/chromium")
ALIVE = Path(os.environ.get("BSOPT_SCRAPER_ALIVE_FILE", "/tmp/bsopt-scraper.alive"))
PAGE_TIMEOUT_MS = 15_000

# Runs in the page: the rendered rows and the underlying's attributes.
EXTRACT = """() => {
  const u = document.getElementById("underlying");
  const rows = [...document.querySelectorAll("tr.quote")].map(tr => ({
    type: tr.dataset.type, strike: tr.dataset.strike, expiry: tr.dataset.expiry,
    bid: tr.dataset.bid, ask: tr.dataset.ask}));
  return {underlying: u && u.dataset.symbol, price: u && u.dataset.price,
          rate: u && u.dataset.rate, dividend_yield: u && u.dataset.dividendYield, rows};
}"""


class ScrapeError(RuntimeError):
    pass


def sandbox_enabled() -> bool:
    return os.environ.get("BSOPT_CHROMIUM_SANDBOX", "1") != "0"


def launch(playwright):
    if not Path(CHROMIUM).is_file():
        raise ScrapeError(f"no Chromium at {CHROMIUM}: install Debian's `chromium` package "
                          "or set BSOPT_CHROMIUM to its path")
    sandbox = sandbox_enabled()
    if not sandbox:
        log.warning("Chromium sandbox OFF (BSOPT_CHROMIUM_SANDBOX=0)")
    return playwright.chromium.launch(executable_path=CHROMIUM, chromium_sandbox=sandbox, headless=True)


def parse(raw: dict, source: str, now: datetime) -> list[dict]:
    """DOM strings -> quote rows; a malformed row stops the page with what was wrong."""
    def num(value, what):
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise ScrapeError(f"{source}: {what} {value!r} is not a number") from None
        if x != x or x in (float("inf"), float("-inf")):
            raise ScrapeError(f"{source}: {what} {value!r} is not finite")
        return x

    if not raw.get("underlying"):
        raise ScrapeError(f"{source}: no #underlying element with data-symbol")
    spot = num(raw.get("price"), "underlying price")
    rate = num(raw.get("rate"), "rate")
    dividend = num(raw.get("dividend_yield") or 0, "dividend yield")
    out = []
    for i, r in enumerate(raw.get("rows") or []):
        kind = (r.get("type") or "").lower()
        if kind not in ("call", "put"):
            raise ScrapeError(f"{source}: row {i}: type {r.get('type')!r} is not call or put")
        try:
            expiry = date.fromisoformat(r.get("expiry") or "")
        except ValueError:
            raise ScrapeError(f"{source}: row {i}: expiry {r.get('expiry')!r} is not an ISO date") from None
        bid, ask = num(r.get("bid"), f"row {i} bid"), num(r.get("ask"), f"row {i} ask")
        if not 0 <= bid <= ask:
            raise ScrapeError(f"{source}: row {i}: bid {bid} / ask {ask} are not 0 <= bid <= ask")
        out.append({"source": source, "underlying": raw["underlying"], "option_type": kind,
                    "strike": num(r.get("strike"), f"row {i} strike"), "expiry": expiry, "bid": bid,
                    "ask": ask, "underlying_price": spot, "rate": rate, "dividend_yield": dividend,
                    "scraped_at": now})
    return out


def scrape_page(browser, url: str) -> list[dict]:
    context = browser.new_context()
    try:
        page = context.new_page()
        page.goto(url, wait_until="domcontentloaded", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_selector("tr.quote", timeout=PAGE_TIMEOUT_MS)
        raw = page.evaluate(EXTRACT)
    finally:
        context.close()
    return parse(raw, url, datetime.now(timezone.utc))


class Scraper:
    def __init__(self, settings: Settings, browser, db: Database, rds: redis.Redis | None, send_task=None):
        self.settings, self.browser, self.db, self.rds = settings, browser, db, rds
        self.send_task = send_task

    def run(self, request_id: str | None = None) -> dict:
        started = time.perf_counter()
        status = {"id": request_id, "state": "running", "started_at": time.time()}
        self._status(request_id, status)
        total, ids, errors = 0, [], []
        for url in self.settings.scrape_targets:
            try:
                rows = scrape_page(self.browser, url)
                ids += self.db.upsert_quotes(rows)
                total += len(rows)
                log.info("scraped %d quotes from %s", len(rows), url)
            except Exception as exc:  # one bad target must not stop the others
                errors.append(f"{url}: {type(exc).__name__}: {exc}")
                log.error("scrape of %s failed: %s", url, exc)
        job = None
        if ids and self.send_task is not None:
            job = self.send_task("bsopt.tasks.implied_vols", kwargs={"quote_ids": ids}).id
        status.update(state="failed" if errors and not ids else "done", quotes=total, quote_ids=len(ids),
                      iv_job=job, errors=errors, seconds=round(time.perf_counter() - started, 3))
        self._status(request_id, status)
        return status

    def _status(self, request_id, status):
        if request_id and self.rds is not None:
            self.rds.set(SCRAPE_STATUS.format(request_id), json.dumps(status), ex=3600)


# Longest wait on Redis in one call: the loop touches the alive file and takes over orphaned
# requests between calls, and a Redis that went away is noticed after this plus REDIS_TIMEOUT.
WAIT_SLICE = 5.0
REDIS_TIMEOUT = WAIT_SLICE + 10.0


def serve(settings: Settings, once: bool = False) -> int:
    db = Database(settings.database_url, maxconn=2)
    # a read timeout above the longest wait: a dead Redis host fails the call instead of holding it
    rds = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=5, socket_timeout=REDIS_TIMEOUT,
                               socket_keepalive=True)
    with sync_playwright() as pw:
        browser = launch(pw)
        log.info("Chromium %s at %s (sandbox %s); targets: %s", browser.version, CHROMIUM,
                 "on" if sandbox_enabled() else "OFF", ", ".join(settings.scrape_targets))
        scraper = Scraper(settings, browser, db, rds, celery_app.send_task)
        if once:
            status = scraper.run()
            print(json.dumps(status))
            return 0 if status["state"] == "done" else 1
        loop(scraper, scrape_requests.Consumer(rds, claim_after=settings.scrape_claim_after),
             settings.scrape_interval)
    return 0


def loop(scraper: Scraper, requests: scrape_requests.Consumer, interval: float, turns: int | None = None) -> None:
    """A run every `interval` seconds after the last one, and one per request as it comes.
    `turns` bounds the loop for tests."""
    next_run = time.monotonic()
    while turns is None or turns > 0:
        turns = None if turns is None else turns - 1
        ALIVE.touch()
        if time.monotonic() >= next_run:
            scraper.run()
            next_run = time.monotonic() + interval
            continue
        try:
            request = requests.next(block=min(WAIT_SLICE, max(0.001, next_run - time.monotonic())))
        except redis.RedisError as exc:
            log.error("Redis: %s (retrying in 5 s)", exc)
            time.sleep(5)
            continue
        if request is None:
            continue
        scraper.run(request.id)
        next_run = time.monotonic() + interval
        try:
            requests.ack(request)
        except redis.RedisError as exc:  # unacknowledged, it is run again later: harmless
            log.error("Redis: acknowledging %s: %s", request.id, exc)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bsopt.scrapers.engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--once", action="store_true", help="one run over every target, then exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return serve(Settings.from_env(), once=args.once)
    except ScrapeError as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
