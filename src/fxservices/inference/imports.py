"""The heavy libraries (feast, mlflow's xgboost flavor, xgboost), imported once per process
under one lock: mlflow's lazily loaded flavors are not safe to import from two threads at once
(the background warm-up and a first request)."""
from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)
_lock = threading.Lock()
_done = False


def without_type_instrumentation() -> None:
    """Leave the classes Feast marks with typeguard's @typechecked as they are, as Python's
    optimized mode does (typeguard: "a no-op in optimized mode"; its checks "aren't meant to be
    run in production"). The decorator recompiles every method of those classes from their
    source when Feast is imported: a second of CPU on 2 cores, a third of what the API's start
    spent importing. Python's -O would do the same but also drop every assert, and the image
    has no optimized byte-code for it. Call it before anything imports Feast: gunicorn_conf
    does, in the master."""
    import typeguard

    def typechecked(target=None, **_options):
        return target if target is not None else (lambda decorated: decorated)

    typeguard.typechecked = typechecked


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
