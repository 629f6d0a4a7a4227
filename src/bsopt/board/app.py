"""The quote board: `uvicorn bsopt.board.app:app` (the API image carries it).

GET /board is an HTML page with an empty table; its script fetches /board/quotes.json and
renders one row per quote, so a scraper that does not run JavaScript sees no quotes at all.
The quotes are Black-Scholes-Merton prices from a volatility smile around a spot of 100, with
a symmetric spread, so the mid price's implied volatility is the smile's volatility (the JSON
carries it as `model_vol` for tests; the page does not show it).
"""

from __future__ import annotations

import os
from datetime import date, timedelta

import numpy as np
from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, ConfigDict

from ..pricing import bsm

SYMBOL = "BSOPT"
SPOT = float(os.environ.get("BSOPT_BOARD_SPOT", "100"))
RATE, DIVIDEND = 0.03, 0.01
EXPIRY_DAYS = (30, 91, 182)
STRIKES = np.arange(80.0, 121.0, 5.0)

app = FastAPI(title="bsopt quote board", docs_url=None, redoc_url=None)


class Health(BaseModel):
    status: str


class BoardQuote(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    type: str
    strike: float
    expiry: str
    bid: float
    ask: float
    model_vol: float


class Board(BaseModel):
    underlying: str
    spot: float
    rate: float
    dividend_yield: float
    as_of: str
    quotes: list[BoardQuote]


def smile(k, f, years):
    x = np.log(k / f)
    return 0.2 - 0.1 * x + 0.4 * x * x / np.sqrt(max(years, 1 / 12))


def board(today: date | None = None) -> dict:
    today = today or date.today()
    rows = []
    for days in EXPIRY_DAYS:
        expiry = today + timedelta(days=days)
        t = days / 365.0
        f = SPOT * np.exp((RATE - DIVIDEND) * t)
        vol = smile(STRIKES, f, t)
        for kind in ("call", "put"):
            mid = bsm.price(SPOT, STRIKES, t, RATE, vol, DIVIDEND, kind == "call")
            half = np.maximum(0.005, 0.01 * mid)
            for k, m, h, v in zip(STRIKES, mid, half, vol):
                rows.append({"type": kind, "strike": float(k), "expiry": expiry.isoformat(),
                             "bid": float(m - h), "ask": float(m + h), "model_vol": float(v)})
    return {"underlying": SYMBOL, "spot": SPOT, "rate": RATE, "dividend_yield": DIVIDEND,
            "as_of": today.isoformat(), "quotes": rows}


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>bsopt quote board</title></head>
<body>
<h1>Option quotes</h1>
<div id="underlying">loading...</div>
<table id="quotes"><thead><tr><th>type</th><th>expiry</th><th>strike</th><th>bid</th><th>ask</th></tr></thead>
<tbody></tbody></table>
<script>
fetch("quotes.json").then(r => r.json()).then(b => {
  const u = document.getElementById("underlying");
  u.textContent = b.underlying + " " + b.spot.toFixed(2);
  u.dataset.symbol = b.underlying; u.dataset.price = b.spot;
  u.dataset.rate = b.rate; u.dataset.dividendYield = b.dividend_yield;
  const body = document.querySelector("#quotes tbody");
  for (const q of b.quotes) {
    const tr = document.createElement("tr");
    tr.className = "quote";
    Object.assign(tr.dataset, {type: q.type, strike: q.strike, expiry: q.expiry, bid: q.bid, ask: q.ask});
    for (const v of [q.type, q.expiry, q.strike.toFixed(2), q.bid.toFixed(4), q.ask.toFixed(4)]) {
      const td = document.createElement("td"); td.textContent = v; tr.appendChild(td);
    }
    body.appendChild(tr);
  }
  document.body.dataset.ready = "1";
});
</script>
</body></html>
"""


@app.get("/health", response_model=Health)
def health():
    return {"status": "ok"}


@app.get("/board", response_class=HTMLResponse)
@app.get("/board/", response_class=HTMLResponse)
def page():
    return PAGE


@app.get("/board/quotes.json", response_model=Board)
@app.get("/quotes.json", response_model=Board)
def quotes():
    return board()
