"""Latest online features of a pair, read from the Feast online store (Redis)."""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)


class FeaturesUnavailable(RuntimeError):
    """The feature store cannot answer; the message says what is missing and what to do."""


RUN_DAG = "trigger the Airflow DAG 'fx_pipeline' (it materializes the features), then retry"


class OnlineFeatures:
    def __init__(self, repo_path: Path, redis_host: str, redis_port: int):
        self.repo_path = repo_path
        self.redis_host = redis_host
        self.redis_port = redis_port
        self._store = None
        self._lock = threading.Lock()

    def _get_store(self):
        if self._store is None:
            with self._lock:
                if self._store is None:
                    from fxservices.feature_repo.store import get_store, registry_path
                    from fxservices.inference.imports import ensure_imported

                    ensure_imported()

                    reg = registry_path()
                    if not reg.exists():
                        raise FeaturesUnavailable(
                            f"the Feast registry {reg} does not exist yet (no `feast apply` "
                            f"ran): {RUN_DAG}")
                    try:
                        self._store = get_store(self.repo_path)
                    except FeaturesUnavailable:
                        raise
                    except Exception as exc:
                        raise FeaturesUnavailable(
                            f"the Feast repo at {self.repo_path} cannot be loaded: "
                            f"{type(exc).__name__}: {exc}") from exc
        return self._store

    def ping_redis(self) -> None:
        import redis

        from fxservices.common.config import redis_auth

        try:
            redis.Redis(host=self.redis_host, port=self.redis_port, socket_timeout=2,
                        socket_connect_timeout=2, **redis_auth()).ping()
        except Exception as exc:
            raise FeaturesUnavailable(
                f"the Feast online store (Redis at {self.redis_host}:{self.redis_port}) is not "
                f"reachable: {exc}") from exc

    def check(self) -> dict:
        """Readiness: Redis answers and the feature view is registered."""
        from fxservices.feature_repo.definitions import FEATURE_VIEW_NAME

        self.ping_redis()
        store = self._get_store()
        try:
            store.get_feature_view(FEATURE_VIEW_NAME)
        except Exception as exc:
            raise FeaturesUnavailable(
                f"feature view '{FEATURE_VIEW_NAME}' is not in the Feast registry "
                f"({type(exc).__name__}): {RUN_DAG}") from exc
        return {"online_store": f"redis://{self.redis_host}:{self.redis_port}",
                "feature_view": FEATURE_VIEW_NAME}

    def latest(self, pair: str) -> tuple[dict, Optional[datetime]]:
        """(feature values by name, event timestamp) of the pair's latest materialized row."""
        from fxservices.feature_repo.definitions import FEATURE_NAMES, feature_refs

        store = self._get_store()
        try:
            resp = store.get_online_features(features=feature_refs(),
                                             entity_rows=[{"pair": pair}])
            data = resp.to_dict(include_event_timestamps=True)
        except Exception as exc:
            text = f"{type(exc).__name__}: {str(exc)[:300]}"
            if "ConnectionError" in type(exc).__name__ or "onnection" in str(exc):
                raise FeaturesUnavailable(
                    f"the Feast online store (Redis at {self.redis_host}:{self.redis_port}) is "
                    f"not reachable: {text}") from exc
            raise FeaturesUnavailable(f"reading online features failed: {text}; {RUN_DAG}") \
                from exc
        values = {k: v[0] for k, v in data.items() if not k.endswith("__ts") and k != "pair"}
        missing = [n for n in FEATURE_NAMES if values.get(n) is None]
        if missing:
            raise FeaturesUnavailable(
                f"no online features for pair {pair} in the Feast online store (missing: "
                f"{', '.join(missing)}): {RUN_DAG}")
        ts_seconds = [v[0] for k, v in data.items() if k.endswith("__ts") and v and v[0]]
        ts = (datetime.fromtimestamp(max(ts_seconds), tz=timezone.utc) if ts_seconds else None)
        return values, ts
