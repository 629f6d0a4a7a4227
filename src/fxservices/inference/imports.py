"""The heavy libraries (feast, mlflow's xgboost flavor, xgboost), imported once per process
under one lock: mlflow's lazily loaded flavors are not safe to import from two threads at once
(the background warm-up and a first request)."""
from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)
_lock = threading.Lock()
_done = False


def ensure_imported() -> None:
    global _done
    if _done:
        return
    with _lock:
        if _done:
            return
        import feast  # noqa: F401
        # what creating the Feast store imports on its first use: the local provider's file
        # offline store (it pulls in dask, a quarter second) and the Redis online store
        import feast.infra.offline_stores.file  # noqa: F401
        import feast.infra.online_stores.redis  # noqa: F401
        import mlflow  # noqa: F401
        import mlflow.xgboost  # noqa: F401
        import xgboost  # noqa: F401

        _done = True
