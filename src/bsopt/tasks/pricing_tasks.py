"""Batch pricing and implied volatilities of scraped quotes."""

from __future__ import annotations

from datetime import date, datetime

import numpy as np

from ..common.errors import InputError, Problem
from ..pricing import bsm
from .base import BsoptTask, db
from .celery_app import app


@app.task(name="bsopt.tasks.price_batch", base=BsoptTask)
def price_batch(spot, strike, years, rate, volatility, dividend_yield=0.0, type="call") -> dict:
    f = bsm.check(spot=spot, strike=strike, years=years, rate=rate, volatility=volatility,
                  dividend_yield=dividend_yield)
    call = bsm.is_call(type)
    g = bsm.greeks(f["spot"], f["strike"], f["years"], f["rate"], f["volatility"], f["dividend_yield"], call)
    return {"count": int(np.size(g.price)), **g.as_lists()}


@app.task(name="bsopt.tasks.implied_vols", base=BsoptTask)
def implied_vols(quote_ids: list[int] | None = None) -> dict:
    """IV of each quote's mid price (ACT/365 days to expiry from the scrape date); a quote no
    volatility reproduces is stored with the reason instead of an IV."""
    if quote_ids is not None and not all(isinstance(i, int) for i in quote_ids):
        raise InputError(Problem("quote_ids", "must be a list of integers", "a list of quote ids, or null for all"))
    quotes = db().quotes(ids=quote_ids, limit=100_000)
    if not quotes:
        return {"quotes": 0, "solved": 0, "failed": 0}
    # ACT/365 in calendar days from the day the quote was scraped (the board's convention too)
    years = np.array([(date.fromisoformat(q["expiry"]) - datetime.fromisoformat(q["scraped_at"]).date()).days
                      / 365.0 for q in quotes])
    mid = np.array([(q["bid"] + q["ask"]) / 2 for q in quotes])
    s = np.array([q["underlying_price"] for q in quotes])
    k = np.array([q["strike"] for q in quotes])
    r = np.array([q["rate"] for q in quotes])
    dq = np.array([q["dividend_yield"] for q in quotes])
    call = np.array([q["option_type"] == "call" for q in quotes])
    live = years > 0
    iv = np.full(len(quotes), np.nan)
    if live.any():
        iv[live] = bsm.implied_vol(mid[live], s[live], k[live], years[live], r[live], dq[live], call[live])
    rows = []
    for i, q in enumerate(quotes):
        if not live[i]:
            rows.append((q["id"], None, "expired", 0.0, float(mid[i])))
        elif np.isnan(iv[i]):
            rows.append((q["id"], None, "no volatility reproduces the mid price", float(years[i]), float(mid[i])))
        else:
            rows.append((q["id"], float(iv[i]), None, float(years[i]), float(mid[i])))
    db().save_ivs(rows)
    solved = sum(1 for r_ in rows if r_[1] is not None)
    return {"quotes": len(rows), "solved": solved, "failed": len(rows) - solved}
