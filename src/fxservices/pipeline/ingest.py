"""Step 1: candles in, bronze parquet out.

With OANDA_API_TOKEN set, candles come from the OANDA v20 REST API; otherwise from a
deterministic generated series (seeded per pair), so the stack works offline.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

CANDLE_COLUMNS = ["pair", "time", "open", "high", "low", "close", "volume"]
OANDA_HOSTS = {
    "practice": "https://api-fxpractice.oanda.com",
    "live": "https://api-fxtrade.oanda.com",
}
GRANULARITY = "H1"
STEP = timedelta(hours=1)

# A plausible starting level per pair; unknown pairs start at 1.0.
_START_PRICE = {"EUR_USD": 1.08, "GBP_USD": 1.26, "USD_JPY": 150.0, "AUD_USD": 0.66,
                "USD_CHF": 0.88, "USD_CAD": 1.36, "NZD_USD": 0.60, "EUR_GBP": 0.86}


class IngestError(RuntimeError):
    pass


def pair_seed(pair: str, salt: int = 0) -> int:
    """Stable across processes and machines (unlike hash())."""
    return (zlib.crc32(pair.encode("utf-8")) ^ salt) & 0xFFFFFFFF


def _floor_hour(ts: datetime) -> datetime:
    ts = ts.astimezone(timezone.utc)
    return ts.replace(minute=0, second=0, microsecond=0)


def generate_candles(pair: str, count: int = 2000, end: Optional[datetime] = None,
                     seed: Optional[int] = None) -> pd.DataFrame:
    """Hourly OHLCV candles for `pair`, the last one opening at `end` (default: the last complete hour, UTC).

    Prices depend only on (pair, count, seed): the same arguments give the same series, on any
    machine. The log-returns follow a mean-reverting AR(1) with regime-switching volatility, so
    there is some structure for a model to find.
    """
    if count < 2:
        raise ValueError("count must be at least 2")
    # default: the last complete hour (its candle closed at the top of this hour)
    end_ts = _floor_hour(end) if end else _floor_hour(datetime.now(timezone.utc)) - STEP
    rng = np.random.default_rng(pair_seed(pair) if seed is None else seed)
    start_price = _START_PRICE.get(pair, 1.0)

    vol_regime = np.where(rng.random(count) < 0.5, 0.0008, 0.0016)
    # smooth the regimes so they persist
    vol = pd.Series(vol_regime).rolling(48, min_periods=1).mean().to_numpy()
    shocks = rng.standard_normal(count) * vol
    rets = np.empty(count)
    prev = 0.0
    for i in range(count):
        prev = -0.15 * prev + shocks[i]
        rets[i] = prev
    close = start_price * np.exp(np.cumsum(rets))
    open_ = np.concatenate([[start_price], close[:-1]])
    wiggle = np.abs(rng.standard_normal((2, count))) * vol * close * 0.6
    high = np.maximum(open_, close) + wiggle[0]
    low = np.minimum(open_, close) - wiggle[1]
    volume = rng.integers(100, 5000, size=count)
    times = pd.date_range(end=pd.Timestamp(end_ts), periods=count, freq="h", tz="UTC")
    df = pd.DataFrame({
        "pair": pair,
        "time": times,
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume.astype("int64"),
    })
    return df[CANDLE_COLUMNS]


def parse_oanda_candles(pair: str, payload: dict) -> pd.DataFrame:
    """The complete mid-price candles of an OANDA v20 /v3/instruments/{pair}/candles answer."""
    rows = []
    for c in payload.get("candles", []):
        if not c.get("complete", False):
            continue
        mid = c.get("mid")
        if not mid:
            raise IngestError(f"OANDA candle for {pair} has no 'mid' prices (ask for price=M)")
        rows.append({
            "pair": pair,
            "time": pd.Timestamp(c["time"]).tz_convert("UTC") if pd.Timestamp(c["time"]).tzinfo
            else pd.Timestamp(c["time"], tz="UTC"),
            "open": float(mid["o"]),
            "high": float(mid["h"]),
            "low": float(mid["l"]),
            "close": float(mid["c"]),
            "volume": int(c.get("volume", 0)),
        })
    df = pd.DataFrame(rows, columns=CANDLE_COLUMNS)
    if not df.empty:
        df["time"] = pd.to_datetime(df["time"], utc=True)
        df["volume"] = df["volume"].astype("int64")
    return df


def fetch_oanda_candles(pair: str, token: str, env: str = "practice", count: int = 2000,
                        granularity: str = GRANULARITY, timeout: float = 30.0) -> pd.DataFrame:
    import requests

    host = OANDA_HOSTS.get(env.lower())
    if host is None:
        raise IngestError(f"OANDA_ENV={env!r}: expected one of {sorted(OANDA_HOSTS)}")
    url = f"{host}/v3/instruments/{pair}/candles"
    resp = requests.get(
        url,
        params={"granularity": granularity, "count": min(count, 5000), "price": "M"},
        headers={"Authorization": f"Bearer {token}", "Accept-Datetime-Format": "RFC3339"},
        timeout=timeout,
    )
    if resp.status_code == 401:
        raise IngestError("OANDA rejected OANDA_API_TOKEN (401 Unauthorized); check the token "
                          "and OANDA_ENV (practice or live)")
    if resp.status_code != 200:
        raise IngestError(f"OANDA {url} answered {resp.status_code}: {resp.text[:300]}")
    df = parse_oanda_candles(pair, resp.json())
    if len(df) < 50:
        raise IngestError(f"OANDA returned only {len(df)} complete candles for {pair}")
    return df


@dataclass
class IngestResult:
    pair: str
    source: str
    rows: int
    path: str
    last_time: str


def bronze_path(data_dir: str | Path, pair: str) -> Path:
    return Path(data_dir) / "bronze" / "candles" / f"{pair}.parquet"


def write_parquet_atomic(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    df.to_parquet(tmp, index=False)
    tmp.replace(path)


def ingest(pairs: list[str] | tuple[str, ...], data_dir: str | Path, *,
           oanda_token: Optional[str] = None, oanda_env: str = "practice",
           count: int = 2000, end: Optional[datetime] = None) -> list[IngestResult]:
    """Fetch or generate candles for each pair and write bronze/candles/<PAIR>.parquet."""
    results = []
    for pair in pairs:
        if oanda_token:
            df = fetch_oanda_candles(pair, oanda_token, oanda_env, count=count)
            source = f"oanda-{oanda_env}"
        else:
            df = generate_candles(pair, count=count, end=end)
            source = "generated"
        path = bronze_path(data_dir, pair)
        write_parquet_atomic(df, path)
        log.info("ingest %s: %d candles from %s -> %s", pair, len(df), source, path)
        results.append(IngestResult(pair=pair, source=source, rows=len(df), path=str(path),
                                    last_time=df["time"].iloc[-1].isoformat()))
    return results


def read_bronze(data_dir: str | Path, pairs: list[str] | tuple[str, ...]) -> pd.DataFrame:
    frames = []
    for pair in pairs:
        path = bronze_path(data_dir, pair)
        if not path.exists():
            raise IngestError(f"no bronze candles for {pair} at {path}: run the ingest step first")
        frames.append(pd.read_parquet(path))
    return pd.concat(frames, ignore_index=True)
