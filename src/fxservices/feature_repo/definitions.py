"""Feast objects of project `fx`: the `pair` entity and the `fx_market_features` view.

The offline source is the parquet file that the pipeline writes under FX_DATA_DIR
(fxservices.pipeline.features.write_offline). Kept free of heavy imports besides feast.
"""
from __future__ import annotations

import os
from datetime import timedelta

from feast import Entity, FeatureView, Field, FileSource, ValueType
from feast.types import Float64, Int64

# The model's inputs, in order. The pipeline computes exactly these columns; the API reads them.
FEATURE_NAMES = (
    "ret_1",
    "ret_4",
    "ret_24",
    "vol_24",
    "rsi_14",
    "sma_ratio_24",
    "range_pct",
    "zscore_24",
)
# Served along with the features but not fed to the model.
INFO_NAMES = ("close", "candle_time")

FEATURE_VIEW_NAME = "fx_market_features"
ENTITY_NAME = "pair"
OFFLINE_RELPATH = os.path.join("feast", "offline", "fx_market_features.parquet")


def offline_path(data_dir: str | None = None) -> str:
    base = data_dir or os.environ.get("FX_DATA_DIR") or "/data"
    return os.path.join(base, OFFLINE_RELPATH)


def build(data_dir: str | None = None):
    """(entity, source, view) with the offline source under `data_dir` (default FX_DATA_DIR,
    read now: a long-lived process that changes FX_DATA_DIR gets the new path)."""
    entity = Entity(
        name=ENTITY_NAME,
        join_keys=["pair"],
        value_type=ValueType.STRING,
        description="Currency pair in OANDA notation, e.g. EUR_USD",
    )
    source = FileSource(
        name="fx_market_source",
        path=offline_path(data_dir),
        timestamp_field="event_timestamp",
        created_timestamp_column="created",
    )
    view = FeatureView(
        name=FEATURE_VIEW_NAME,
        entities=[entity],
        ttl=timedelta(days=7),
        schema=[Field(name=name, dtype=Float64) for name in FEATURE_NAMES + ("close",)]
        + [Field(name="candle_time", dtype=Int64)],
        online=True,
        source=source,
        tags={"owner": "fx-pipeline"},
    )
    return entity, source, view


# Module-level objects: what `feast apply` (the CLI) finds when it imports this repo.
pair, market_source, fx_market_features = build()


def feature_refs() -> list[str]:
    return [f"{FEATURE_VIEW_NAME}:{name}" for name in FEATURE_NAMES + INFO_NAMES]


def objects(data_dir: str | None = None) -> list:
    """What `apply` registers, built for the current FX_DATA_DIR (or `data_dir`)."""
    return list(build(data_dir))
