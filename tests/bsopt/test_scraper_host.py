"""The scraper's page handling against a real Chromium (Debian's `chromium`, as in the image)
and the real quote board served by uvicorn on 127.0.0.1. On the host these tests run as root,
where Chromium refuses its sandbox, so they launch with it off; the image runs it non-root with
the sandbox on (tests/bsopt/test_bsopt_images.py)."""

from __future__ import annotations

import shutil
import threading
import time
from datetime import datetime, timezone

import pytest

from bsopt.board import app as board
from bsopt.scrapers import engine

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def board_url():
    import uvicorn

    from fxstack.stack.docker_state import free_port

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(board.app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "board did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}/board"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser(monkeypatch_module):
    from playwright.sync_api import sync_playwright

    path = shutil.which("chromium")
    if not path:
        pytest.skip("Debian's chromium is not installed on this host (apt-get install chromium)")
    monkeypatch_module.setattr(engine, "CHROMIUM", path)
    monkeypatch_module.setenv("BSOPT_CHROMIUM_SANDBOX", "0")   # root on the host: see the docstring
    with sync_playwright() as pw:
        b = engine.launch(pw)
        yield b
        b.close()


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_scrape_reads_the_rows_javascript_rendered(browser, board_url):
    rows = engine.scrape_page(browser, board_url)
    want = board.board()
    assert len(rows) == len(want["quotes"]) == 54
    by_key = {(q["type"], q["strike"], q["expiry"]): q for q in want["quotes"]}
    for r in rows:
        q = by_key[(r["option_type"], r["strike"], r["expiry"].isoformat())]
        assert r["bid"] == q["bid"] and r["ask"] == q["ask"]          # full precision, from data-*
        assert r["underlying"] == "BSOPT" and r["underlying_price"] == board.SPOT
        assert r["rate"] == board.RATE and r["source"] == board_url


def test_a_page_without_the_script_has_no_rows(browser, board_url):
    # the raw HTML has an empty table: only a browser that runs the script finds quotes
    import urllib.request

    html = urllib.request.urlopen(board_url, timeout=10).read().decode()
    assert 'class="quote"' not in html and "<tbody></tbody>" in html


def test_parse_refuses_malformed_rows_with_the_row_and_value():
    now = datetime.now(timezone.utc)
    good = {"underlying": "X", "price": "100", "rate": "0.01", "dividend_yield": "0",
            "rows": [{"type": "call", "strike": "100", "expiry": "2099-01-01", "bid": "1", "ask": "1.1"}]}
    assert engine.parse(good, "u", now)[0]["strike"] == 100.0
    for change, message in (({"bid": "abc"}, "row 0 bid 'abc' is not a number"),
                            ({"bid": "2"}, "not 0 <= bid <= ask"),
                            ({"type": "future"}, "is not call or put"),
                            ({"expiry": "soon"}, "is not an ISO date")):
        bad = {**good, "rows": [{**good["rows"][0], **change}]}
        with pytest.raises(engine.ScrapeError, match=message):
            engine.parse(bad, "u", now)
