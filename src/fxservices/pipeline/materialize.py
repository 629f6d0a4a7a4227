"""Step 3: register the Feast objects and load the latest features into the online store (Redis)."""
from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from typing import Optional

import pandas as pd

log = logging.getLogger(__name__)


def apply_repo(repo_path: Optional[str | Path] = None, data_dir: Optional[str | Path] = None):
    """`feast apply` done in code: registers the entity, source and feature view (the source
    under `data_dir`, default FX_DATA_DIR; the registry file is under FX_DATA_DIR)."""
    from fxservices.feature_repo import definitions
    from fxservices.feature_repo.store import get_store, registry_path

    registry_path().parent.mkdir(parents=True, exist_ok=True)
    store = get_store(repo_path)
    objs = definitions.objects(str(data_dir) if data_dir else None)
    store.apply(objs)
    log.info("feast apply: %s (offline source %s)", [o.name for o in objs], objs[1].path)
    return store


def materialize(data_dir: str | Path, repo_path: Optional[str | Path] = None) -> dict:
    """Apply the repo, then materialize the whole offline window into Redis.

    Returns {"rows": offline rows, "start": ..., "end": ..., "latest": {pair: iso time}}.
    """
    from fxservices.pipeline.features import offline_path

    path = offline_path(data_dir)
    if not path.exists():
        raise FileNotFoundError(f"no offline features at {path}: run the features step first")
    df = pd.read_parquet(path, columns=["pair", "event_timestamp"])
    if df.empty:
        raise ValueError(f"{path} holds no rows")
    start = df["event_timestamp"].min().to_pydatetime() - timedelta(seconds=1)
    end = df["event_timestamp"].max().to_pydatetime() + timedelta(seconds=1)
    store = apply_repo(repo_path, data_dir)
    store.materialize(start_date=start, end_date=end)
    latest = {p: t.isoformat() for p, t in df.groupby("pair")["event_timestamp"].max().items()}
    log.info("materialized %s .. %s into the online store: %s", start, end, latest)
    return {"rows": int(len(df)), "start": start.isoformat(), "end": end.isoformat(),
            "latest": latest}
