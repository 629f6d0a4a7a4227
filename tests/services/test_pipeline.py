"""Pipeline steps as plain functions: generated candles, bronze files, features, training."""
from __future__ import annotations

import math
from datetime import datetime, timezone

import pytest

pytestmark = pytest.mark.unit

END = datetime(2026, 3, 2, 12, 0, tzinfo=timezone.utc)


def test_generated_series_is_deterministic_per_pair():
    from fxservices.pipeline.ingest import generate_candles

    a = generate_candles("EUR_USD", count=500, end=END)
    b = generate_candles("EUR_USD", count=500, end=END)
    assert a.equals(b)
    c = generate_candles("GBP_USD", count=500, end=END)
    assert not (a["close"].to_numpy() == c["close"].to_numpy()).all()
    # prices depend on (pair, count, seed), not on the end time
    later = generate_candles("EUR_USD", count=500, end=datetime(2026, 5, 1, tzinfo=timezone.utc))
    assert (later["close"].to_numpy() == a["close"].to_numpy()).all()
    # the seed is stable across processes (crc32, not hash())
    from fxservices.pipeline.ingest import pair_seed

    import zlib

    assert pair_seed("EUR_USD") == zlib.crc32(b"EUR_USD") == 2364668158
    # pinned values: the same series on every machine (numpy's PCG64 is platform-independent)
    assert round(float(a["close"].iloc[-1]), 10) == 1.0912501096
    assert round(float(a["close"].sum()), 8) == 543.0370527


def test_generated_candles_are_well_formed():
    from fxservices.pipeline.ingest import CANDLE_COLUMNS, generate_candles

    df = generate_candles("USD_JPY", count=300, end=END)
    assert list(df.columns) == CANDLE_COLUMNS
    assert len(df) == 300
    assert df["time"].iloc[-1] == END
    assert (df["time"].diff().dropna() == df["time"].iloc[1] - df["time"].iloc[0]).all()
    assert (df["high"] >= df[["open", "close"]].max(axis=1)).all()
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()
    assert (df["low"] > 0).all()
    assert 100 < df["close"].iloc[0] < 200  # starts near USD_JPY's level
    assert (df["open"].iloc[1:].to_numpy() == df["close"].iloc[:-1].to_numpy()).all()


def test_default_end_is_the_last_complete_hour():
    from fxservices.pipeline.ingest import generate_candles

    df = generate_candles("EUR_USD", count=10)
    now = datetime.now(timezone.utc)
    last_close = df["time"].iloc[-1].to_pydatetime().timestamp() + 3600
    assert last_close <= now.timestamp() + 1
    assert now.timestamp() - last_close < 3600 + 5


def test_ingest_writes_bronze_parquet(tmp_path):
    import pandas as pd

    from fxservices.pipeline.ingest import bronze_path, ingest, read_bronze

    results = ingest(["EUR_USD", "GBP_USD"], tmp_path, count=200, end=END)
    assert [r.pair for r in results] == ["EUR_USD", "GBP_USD"]
    assert all(r.source == "generated" and r.rows == 200 for r in results)
    df = pd.read_parquet(bronze_path(tmp_path, "EUR_USD"))
    assert len(df) == 200 and df["pair"].unique().tolist() == ["EUR_USD"]
    both = read_bronze(tmp_path, ["EUR_USD", "GBP_USD"])
    assert len(both) == 400
    with pytest.raises(Exception, match="run the ingest step first"):
        read_bronze(tmp_path, ["USD_JPY"])


def test_oanda_payload_parsing_keeps_complete_mid_candles():
    from fxservices.pipeline.ingest import parse_oanda_candles

    # the shape of GET /v3/instruments/EUR_USD/candles?price=M (OANDA v20 REST)
    payload = {
        "instrument": "EUR_USD", "granularity": "H1",
        "candles": [
            {"complete": True, "volume": 1520, "time": "2026-03-02T10:00:00.000000000Z",
             "mid": {"o": "1.08010", "h": "1.08120", "l": "1.07950", "c": "1.08100"}},
            {"complete": True, "volume": 980, "time": "2026-03-02T11:00:00.000000000Z",
             "mid": {"o": "1.08100", "h": "1.08200", "l": "1.08000", "c": "1.08050"}},
            {"complete": False, "volume": 12, "time": "2026-03-02T12:00:00.000000000Z",
             "mid": {"o": "1.08050", "h": "1.08060", "l": "1.08040", "c": "1.08055"}},
        ],
    }
    df = parse_oanda_candles("EUR_USD", payload)
    assert len(df) == 2
    assert df["close"].tolist() == [1.081, 1.0805]
    assert str(df["time"].dt.tz) == "UTC"
    assert df["time"].iloc[1].hour == 11
    assert df["volume"].tolist() == [1520, 980]


def test_features_values_and_point_in_time(tmp_path):
    import numpy as np

    from fxservices.pipeline.features import (FEATURE_NAMES, LABEL, OFFLINE_COLUMNS, WARMUP,
                                              build_features)
    from fxservices.pipeline.ingest import generate_candles

    candles = generate_candles("EUR_USD", count=300, end=END)
    f = build_features(candles)
    assert list(f.columns) == OFFLINE_COLUMNS + [LABEL]
    assert len(f) == 300 - WARMUP
    assert not f[list(FEATURE_NAMES)].isna().any().any()
    c = candles.set_index("time")["close"]
    row = f.iloc[10]
    t = row["event_timestamp"] - (candles["time"].iloc[1] - candles["time"].iloc[0])
    i = c.index.get_loc(t)
    assert math.isclose(row["ret_1"], math.log(c.iloc[i] / c.iloc[i - 1]), rel_tol=1e-12)
    assert math.isclose(row["ret_24"], math.log(c.iloc[i] / c.iloc[i - 24]), rel_tol=1e-12)
    assert math.isclose(row["sma_ratio_24"], c.iloc[i] / c.iloc[i - 23:i + 1].mean() - 1,
                        rel_tol=1e-9)
    assert row["candle_time"] == int(t.timestamp())
    assert (f["rsi_14"].between(0, 100)).all()
    assert (f["vol_24"] > 0).all()
    # the label is the direction of the NEXT candle; the last row has none
    nxt = np.sign(f["ret_1"].shift(-1).iloc[:-1].to_numpy())
    assert (f[LABEL].iloc[:-1].to_numpy() == (nxt > 0)).all()
    assert np.isnan(f[LABEL].iloc[-1])

    # no look-ahead: changing the future does not change past features
    changed = candles.copy()
    changed.loc[changed.index[-5:], "close"] *= 1.5
    g = build_features(changed)
    cols = list(FEATURE_NAMES)
    assert f[cols].iloc[:-6].equals(g[cols].iloc[:-6])


def test_offline_and_training_files(tmp_path):
    import pandas as pd

    from fxservices.pipeline.features import (LABEL, OFFLINE_COLUMNS, build_features,
                                              write_offline, write_training)
    from fxservices.pipeline.ingest import ingest, read_bronze

    ingest(["EUR_USD", "USD_JPY"], tmp_path, count=200, end=END)
    f = build_features(read_bronze(tmp_path, ["EUR_USD", "USD_JPY"]))
    off = pd.read_parquet(write_offline(f, tmp_path))
    assert list(off.columns) == OFFLINE_COLUMNS  # the label never reaches the feature store
    assert off.groupby("pair")["event_timestamp"].max().tolist() == [
        pd.Timestamp("2026-03-02T13:00:00Z")] * 2
    tr = pd.read_parquet(write_training(f, tmp_path))
    assert tr[LABEL].notna().all() and len(tr) == len(f) - 2
    assert tr["event_timestamp"].is_monotonic_increasing


def test_training_learns_something_on_the_generated_series(tmp_path):
    from fxservices.pipeline.features import build_features, training_frame
    from fxservices.pipeline.ingest import ingest, read_bronze
    from fxservices.pipeline.train import evaluate, fit, split

    pairs = ["EUR_USD", "GBP_USD", "USD_JPY"]
    ingest(pairs, tmp_path, count=1500, end=END)
    frame = training_frame(build_features(read_bronze(tmp_path, pairs)))
    train, test = split(frame)
    assert train["event_timestamp"].max() <= test["event_timestamp"].min()
    m1 = evaluate(fit(train), test)
    m2 = evaluate(fit(train), test)
    assert m1 == m2  # deterministic
    assert set(m1) >= {"accuracy", "logloss", "auc", "base_rate"}
    # the generated returns mean-revert (AR(1) with a negative coefficient): a model finds it
    assert m1["auc"] > 0.53, m1


class _Registry:
    """What MLflow's client answers for a version while it registers. A real server never
    shows PENDING_REGISTRATION for a local model source, so nothing real can stand in here."""

    def __init__(self, *statuses):
        self.statuses = list(statuses)

    def get_model_version(self, name, version):
        from types import SimpleNamespace

        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        return SimpleNamespace(status=status)


def test_registration_wait_follows_the_status():
    from fxservices.pipeline.train import _wait_ready

    reg = _Registry("PENDING_REGISTRATION", "PENDING_REGISTRATION", "READY")
    _wait_ready(reg, "m", "3", timeout=30, interval=0.01)
    assert reg.statuses == ["READY"]
    with pytest.raises(RuntimeError, match=r"model m version 3 did not become READY "
                                           r"\(FAILED_REGISTRATION\)"):
        _wait_ready(_Registry("PENDING_REGISTRATION", "FAILED_REGISTRATION"), "m", "3",
                    timeout=30, interval=0.01)
    with pytest.raises(RuntimeError, match=r"did not become READY: .*still "
                                           r"'PENDING_REGISTRATION' after 0.1 s"):
        _wait_ready(_Registry("PENDING_REGISTRATION"), "m", "3", timeout=0.1, interval=0.01)
