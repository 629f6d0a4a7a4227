"""The served model: the MLflow registry version that carries FX_MODEL_ALIAS, re-checked every
FX_MODEL_REFRESH_SECONDS so a newly registered version is served without a restart."""
from __future__ import annotations

import logging
import os
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Optional

log = logging.getLogger(__name__)

# Fail fast instead of MLflow's default retry-with-backoff (a minute per call when the server
# is down): a request must get an answer quickly.
os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no tqdm in the logs


class ModelUnavailable(RuntimeError):
    """No servable model; the message says what is missing and what to do."""


@dataclass
class LoadedModel:
    name: str
    alias: str
    version: str
    run_id: Optional[str]
    model: Any
    feature_names: list[str]
    loaded_at: float

    booster: Any = None

    def predict_proba_up(self, features: dict[str, float]) -> float:
        import numpy as np

        row = np.array([[float(features[n]) for n in self.feature_names]], dtype=np.float64)
        if self.booster is not None:
            # ~0.5 ms, against ~15 ms for XGBClassifier.predict_proba on a DataFrame
            out = self.booster.inplace_predict(row, validate_features=False)
            return float(np.asarray(out).reshape(-1)[-1])
        return float(self.model.predict_proba(row)[0, 1])


def _is_not_found(exc: Exception) -> bool:
    code = getattr(exc, "error_code", "") or ""
    text = str(exc)
    return ("RESOURCE_DOES_NOT_EXIST" in code or "RESOURCE_DOES_NOT_EXIST" in text
            or "not found" in text.lower() or "does not exist" in text.lower())


_polite_lock = threading.Lock()
_polite_depth = 0
_polite_saved = 0.005


@contextmanager
def polite_to_the_event_loop():
    """While Python work runs beside requests in another thread (a model version loading:
    MLflow download, YAML, XGBoost parse; a Feast read), hand the GIL back every 0.5 ms instead
    of every 5 ms. The event loop releases the GIL at every socket call and waits up to one
    switch interval to get it back, several times per request: at 5 ms that wait was the p99
    of the seconds after a swap. Threads may overlap: the first to enter sets the interval,
    the last to leave restores it."""
    global _polite_depth, _polite_saved
    with _polite_lock:
        if _polite_depth == 0:
            _polite_saved = sys.getswitchinterval()
            sys.setswitchinterval(min(_polite_saved, 0.0005))
        _polite_depth += 1
    try:
        yield
    finally:
        with _polite_lock:
            _polite_depth -= 1
            if _polite_depth == 0:
                sys.setswitchinterval(_polite_saved)


class ModelCache:
    # With nothing loaded and the registry unreachable (MLflow still starting, or restarting),
    # ask again after this many seconds instead of the TTL: once MLflow answers, the worker
    # serves within a second, not up to FX_MODEL_REFRESH_SECONDS later.
    RETRY_UNREACHABLE_SECONDS = 1.0

    def __init__(self, tracking_uri: str, name: str, alias: str, ttl_seconds: float = 10.0,
                 default_features: tuple[str, ...] = ()):
        self.tracking_uri = tracking_uri
        self.name = name
        self.alias = alias
        self.ttl = ttl_seconds
        self._unreachable = False
        self.default_features = list(default_features)
        self._lock = threading.Lock()
        self._loaded: Optional[LoadedModel] = None
        self._checked_at = 0.0
        self._error: Optional[str] = None
        self._client = None
        # called (in the thread that loaded it) after a new version is loaded
        self.on_new_model: Optional[Callable[[], None]] = None
        # called with a new version in the thread that loaded it, before any request is
        # served with it: what its first requests would otherwise wait for happens here
        self.before_serving: Optional[Callable[[LoadedModel], None]] = None
        # called with the version served (None: nothing) whenever that changes
        self.on_version_change: Optional[Callable[[Optional[str]], None]] = None

    @property
    def loaded(self) -> Optional[LoadedModel]:
        return self._loaded

    def _mlflow_client(self):
        if self._client is None:
            from fxservices.inference.imports import ensure_imported

            ensure_imported()
            from mlflow import MlflowClient

            self._client = MlflowClient(tracking_uri=self.tracking_uri,
                                        registry_uri=self.tracking_uri)
        return self._client

    def _missing_message(self) -> str:
        return (f"no version of model '{self.name}' carries the alias '{self.alias}' in the "
                f"MLflow registry at {self.tracking_uri}: trigger the Airflow DAG 'fx_pipeline' "
                f"(it trains a model, registers it and sets the alias), then retry")

    def _load(self, version: str, run_id: Optional[str]) -> LoadedModel:
        from fxservices.inference.imports import ensure_imported

        ensure_imported()
        import mlflow
        import mlflow.xgboost

        mlflow.set_tracking_uri(self.tracking_uri)
        model = mlflow.xgboost.load_model(f"models:/{self.name}/{version}")
        booster = None
        try:
            booster = model.get_booster()  # sklearn API (XGBClassifier)
        except AttributeError:
            if hasattr(model, "inplace_predict"):  # a plain Booster
                booster = model
        names = getattr(booster, "feature_names", None) if booster is not None else None
        if booster is not None:
            booster.set_param({"nthread": 1})  # one request, one core: no oversubscription
        return LoadedModel(name=self.name, alias=self.alias, version=str(version), run_id=run_id,
                           model=model, feature_names=list(names or self.default_features),
                           loaded_at=time.time(), booster=booster)

    def refresh(self) -> None:
        """Resolve the alias now; load the version it points at if it changed."""
        self._unreachable = False
        try:
            mv = self._mlflow_client().get_model_version_by_alias(self.name, self.alias)
        except Exception as exc:
            self._unreachable = not _is_not_found(exc)
            if _is_not_found(exc):
                self._loaded = None
                self._error = self._missing_message()
            else:
                self._error = (f"the MLflow registry at {self.tracking_uri} cannot be reached "
                               f"({type(exc).__name__}: {str(exc)[:200]}); check the mlflow "
                               "service")
                if self._loaded is not None:
                    log.warning("keeping model version %s: %s", self._loaded.version, self._error)
            return
        version = str(mv.version)
        if self._loaded is None or self._loaded.version != version:
            try:
                new = self._load(version, getattr(mv, "run_id", None))
            except Exception as exc:
                self._error = (f"model '{self.name}' version {version} (alias '{self.alias}') "
                               f"could not be loaded: {type(exc).__name__}: {str(exc)[:300]}")
                log.error(self._error)
                return
            if self.before_serving is not None:
                try:
                    self.before_serving(new)
                except Exception:  # the model is still good: its requests do the work then
                    log.exception("preparing model version %s before serving it failed", version)
            old = self._loaded.version if self._loaded else None
            self._loaded = new
            log.info("serving model %s version %s (alias %s; was %s)", self.name, version,
                     self.alias, old)
        self._error = None

    def get(self) -> LoadedModel:
        """The model to serve, checking the alias first when the check is due (blocks for an
        MLflow round trip then); raises ModelUnavailable saying what is missing."""
        if not self.fresh():
            with self._lock:
                if not self.fresh():
                    self._check()
        loaded = self._loaded
        if loaded is None:
            raise ModelUnavailable(self.unavailable_reason())
        return loaded

    def checked(self) -> bool:
        """Whether any alias check has finished in this worker (its first one runs at start)."""
        return self._checked_at > 0.0

    def unavailable_reason(self) -> str:
        """Why nothing is served (when nothing is loaded): the last check's error, or that the
        first check has not finished yet."""
        if self._error:
            return self._error
        if not self.checked():
            return (f"model '{self.name}' (alias '{self.alias}') is being loaded by this worker; "
                    "retry in a moment")
        return self._missing_message()

    def serve(self) -> Optional[LoadedModel]:
        """The loaded model, without waiting; None when none is loaded (unavailable_reason()
        says why; a request then gets 503 at once).

        When the alias check is due it runs in a background thread and this call returns the
        model loaded now (stale-while-revalidate). A check blocks for an MLflow round trip,
        up to MLFLOW_HTTP_REQUEST_TIMEOUT: done inline, every request that arrived meanwhile
        waited behind it, every FX_MODEL_REFRESH_SECONDS, and that was the p99 latency. The
        same goes for a worker with nothing loaded yet: requests that waited for its first
        load were the p99 of the seconds after the first model was registered."""
        loaded = self._loaded
        if not self.fresh() and self._lock.acquire(blocking=False):
            threading.Thread(target=self._check_then_release, name="fx-model-check",
                             daemon=True).start()
        return loaded

    def poll_until_loaded(self, min_interval: float = 0.2) -> None:
        """Nothing registered yet: check every TTL from this (background) thread until a version
        loads, so each worker loads the first one as soon as it is registered, not when a
        request finds it missing (that request, and every one behind it, would wait)."""
        while self._loaded is None:
            time.sleep(max(self._interval(), min_interval))
            if self._loaded is None and self._lock.acquire(blocking=False):
                self._check_then_release()  # (else a request is checking right now)

    def _check_then_release(self) -> None:
        """A due alias check from a background thread, which holds self._lock."""
        try:
            if not self.fresh():
                with polite_to_the_event_loop():
                    self._check()
        except Exception:  # a background thread has no caller to raise to
            loaded = self._loaded
            log.exception("model alias check failed; serving %s meanwhile",
                          f"version {loaded.version}" if loaded else "nothing")
        finally:
            self._lock.release()

    def _check(self) -> None:
        before = self._loaded
        try:
            self.refresh()
        finally:
            self._checked_at = time.monotonic()
        if self._loaded is not None and self._loaded is not before and self.on_new_model:
            self.on_new_model()
        version = self._loaded.version if self._loaded else None
        if self.on_version_change and version != (before.version if before else None):
            self.on_version_change(version)

    def _interval(self) -> float:
        if self._loaded is None and self._unreachable:
            return min(self.ttl, self.RETRY_UNREACHABLE_SECONDS)
        return self.ttl

    def fresh(self) -> bool:
        """True while the last alias check is younger than the TTL (get() will not block);
        with nothing loaded and MLflow unreachable, younger than RETRY_UNREACHABLE_SECONDS."""
        return time.monotonic() - self._checked_at < self._interval()
