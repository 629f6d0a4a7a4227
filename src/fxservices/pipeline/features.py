"""Step 2: bronze candles -> market features (the Feast offline source)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from fxservices.pipeline.ingest import STEP, write_parquet_atomic

log = logging.getLogger(__name__)

# Same names as fxservices.feature_repo.definitions.FEATURE_NAMES (checked by a test);
# repeated here so this module does not need feast.
FEATURE_NAMES = ("ret_1", "ret_4", "ret_24", "vol_24", "rsi_14", "sma_ratio_24", "range_pct",
                 "zscore_24")
OFFLINE_COLUMNS = ["pair", "event_timestamp", "created", *FEATURE_NAMES, "close", "candle_time"]
LABEL = "target_up"
WARMUP = 24  # rows per pair before every feature is defined


def _rsi(close: pd.Series, window: int = 14) -> pd.Series:
    diff = close.diff()
    gain = diff.clip(lower=0.0).ewm(alpha=1.0 / window, adjust=False, min_periods=window).mean()
    loss = (-diff.clip(upper=0.0)).ewm(alpha=1.0 / window, adjust=False, min_periods=window).mean()
    rs = gain / loss.replace(0.0, np.nan)
    rsi = 100.0 - 100.0 / (1.0 + rs)
    # no losses at all in the window: RSI is 100
    return rsi.where(loss != 0.0, 100.0).where(gain.notna())


def _pair_features(c: pd.DataFrame) -> pd.DataFrame:
    c = c.sort_values("time").reset_index(drop=True)
    close = c["close"].astype("float64")
    logc = np.log(close)
    out = pd.DataFrame({"pair": c["pair"]})
    out["ret_1"] = logc.diff(1)
    out["ret_4"] = logc.diff(4)
    out["ret_24"] = logc.diff(24)
    out["vol_24"] = out["ret_1"].rolling(24).std()
    out["rsi_14"] = _rsi(close, 14)
    mean24 = close.rolling(24).mean()
    std24 = close.rolling(24).std()
    out["sma_ratio_24"] = close / mean24 - 1.0
    out["range_pct"] = (c["high"] - c["low"]) / close
    out["zscore_24"] = ((close - mean24) / std24.replace(0.0, np.nan)).fillna(0.0)
    out["close"] = close
    # A candle's features are known when it closes: one step after its open time.
    times = pd.to_datetime(c["time"], utc=True)
    out["event_timestamp"] = times + STEP
    out["created"] = out["event_timestamp"]
    out["candle_time"] = (times.astype("int64") // 10**9).astype("int64")
    # Label for training: does the next candle close higher?
    out[LABEL] = (out["ret_1"].shift(-1) > 0).astype("float64").where(out["ret_1"].shift(-1).notna())
    return out


def build_features(candles: pd.DataFrame) -> pd.DataFrame:
    """Features per pair and candle; the first WARMUP rows of each pair (undefined) are dropped.

    Columns: OFFLINE_COLUMNS plus LABEL (NaN on each pair's last row).
    """
    missing = {"pair", "time", "open", "high", "low", "close"} - set(candles.columns)
    if missing:
        raise ValueError(f"candles lack columns {sorted(missing)}")
    frames = [_pair_features(g) for _, g in candles.groupby("pair", sort=True)]
    df = pd.concat(frames, ignore_index=True)
    df = df.dropna(subset=list(FEATURE_NAMES)).reset_index(drop=True)
    return df[OFFLINE_COLUMNS + [LABEL]]


def offline_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "feast" / "offline" / "fx_market_features.parquet"


def write_offline(features: pd.DataFrame, data_dir: str | Path) -> Path:
    """Write the Feast offline source (no label: it looks into the future)."""
    path = offline_path(data_dir)
    write_parquet_atomic(features[OFFLINE_COLUMNS], path)
    log.info("features: %d rows -> %s", len(features), path)
    return path


def training_frame(features: pd.DataFrame) -> pd.DataFrame:
    """Rows with a label, in time order."""
    df = features.dropna(subset=[LABEL]).sort_values(["event_timestamp", "pair"])
    return df.reset_index(drop=True)


def training_path(data_dir: str | Path) -> Path:
    return Path(data_dir) / "silver" / "fx_training.parquet"


def write_training(features: pd.DataFrame, data_dir: str | Path) -> Path:
    """Features plus the label, for the training step."""
    path = training_path(data_dir)
    write_parquet_atomic(training_frame(features), path)
    return path
