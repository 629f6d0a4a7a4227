"""Step 4: train an XGBoost direction classifier, log it to MLflow, register it, move the alias."""
from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pandas as pd

from fxservices.common.polling import poll
from fxservices.pipeline.features import FEATURE_NAMES, LABEL

log = logging.getLogger(__name__)

# The images have no git: keep MLflow from warning about it on every run.
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")

EXPERIMENT = "fx-direction"
DEFAULT_PARAMS = {
    "n_estimators": 150,
    "max_depth": 3,
    "learning_rate": 0.05,
    "subsample": 0.9,
    "colsample_bytree": 0.9,
    "min_child_weight": 5,
    "random_state": 42,
    "n_jobs": 2,
    "tree_method": "hist",
}


@dataclass
class TrainResult:
    run_id: str
    model_name: str
    version: str
    alias: str
    metrics: dict
    n_train: int
    n_test: int


def split(frame: pd.DataFrame, test_fraction: float = 0.2):
    """Time-ordered split (no shuffling: the test rows come after the training rows)."""
    frame = frame.sort_values(["event_timestamp", "pair"]).reset_index(drop=True)
    cut = int(len(frame) * (1.0 - test_fraction))
    if cut < 50 or len(frame) - cut < 10:
        raise ValueError(f"not enough labelled rows to train ({len(frame)})")
    return frame.iloc[:cut], frame.iloc[cut:]


def fit(train: pd.DataFrame, params: Optional[dict] = None):
    from xgboost import XGBClassifier

    model = XGBClassifier(objective="binary:logistic", eval_metric="logloss",
                          **{**DEFAULT_PARAMS, **(params or {})})
    model.fit(train[list(FEATURE_NAMES)], train[LABEL].astype(int))
    return model


def evaluate(model, test: pd.DataFrame) -> dict:
    from sklearn.metrics import accuracy_score, log_loss, roc_auc_score

    y = test[LABEL].astype(int).to_numpy()
    proba = model.predict_proba(test[list(FEATURE_NAMES)])[:, 1]
    pred = (proba >= 0.5).astype(int)
    metrics = {
        "accuracy": float(accuracy_score(y, pred)),
        "logloss": float(log_loss(y, np.clip(proba, 1e-7, 1 - 1e-7), labels=[0, 1])),
        "base_rate": float(y.mean()),
    }
    if len(np.unique(y)) == 2:
        metrics["auc"] = float(roc_auc_score(y, proba))
    return metrics


def _wait_ready(client, name: str, version: str, timeout: float = 60.0,
                interval: float = 0.5) -> None:
    """Until the registry has the new version READY (FAILED_REGISTRATION or the timeout: a
    RuntimeError that says which)."""
    def status() -> str:
        return getattr(client.get_model_version(name, version), "status", "READY")

    try:
        final = poll(status, until=lambda s: s != "PENDING_REGISTRATION", interval=interval,
                     timeout=timeout, what=f"model {name} version {version} registration")
    except TimeoutError as exc:
        raise RuntimeError(f"model {name} version {version} did not become READY: {exc}") \
            from None
    if final != "READY":
        raise RuntimeError(f"model {name} version {version} did not become READY ({final})")


def train_and_register(training_file: str | Path, *, tracking_uri: str, model_name: str,
                       alias: str, params: Optional[dict] = None,
                       tags: Optional[dict] = None) -> TrainResult:
    """Train on the labelled features, log to MLflow, register under `model_name` and point
    `alias` at the new version. Returns what was registered."""
    import mlflow
    import mlflow.xgboost
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    frame = pd.read_parquet(training_file)
    train, test = split(frame)
    model = fit(train, params)
    metrics = evaluate(model, test)

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    mlflow.set_experiment(EXPERIMENT)
    example = test[list(FEATURE_NAMES)].head(5)
    signature = infer_signature(example, model.predict_proba(example)[:, 1])
    with mlflow.start_run(run_name=f"{model_name}-{int(time.time())}") as run:
        mlflow.log_params({**DEFAULT_PARAMS, **(params or {})})
        mlflow.log_params({"features": ",".join(FEATURE_NAMES), "label": LABEL,
                           "n_train": len(train), "n_test": len(test),
                           "pairs": ",".join(sorted(frame["pair"].unique()))})
        mlflow.log_metrics(metrics)
        if tags:
            mlflow.set_tags(tags)
        mlflow.xgboost.log_model(model, artifact_path="model", signature=signature,
                                 input_example=example, model_format="json")
        run_id = run.info.run_id

    try:
        client.create_registered_model(model_name)
    except Exception as exc:  # already exists
        if "RESOURCE_ALREADY_EXISTS" not in str(exc) and "already exists" not in str(exc):
            raise
    mv = client.create_model_version(model_name, source=f"runs:/{run_id}/model", run_id=run_id,
                                     tags={"features": ",".join(FEATURE_NAMES)})
    _wait_ready(client, model_name, mv.version)
    client.set_registered_model_alias(model_name, alias, mv.version)
    log.info("registered %s version %s (alias %s), metrics %s", model_name, mv.version, alias,
             metrics)
    return TrainResult(run_id=run_id, model_name=model_name, version=str(mv.version), alias=alias,
                       metrics=metrics, n_train=len(train), n_test=len(test))


def result_dict(result: TrainResult) -> dict:
    return asdict(result)
