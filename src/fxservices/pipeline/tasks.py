"""The DAG's task callables: one per step, configured from the environment, returning small
JSON-able summaries (they go to XCom). Each works without Airflow."""
from __future__ import annotations

import logging
from dataclasses import asdict

from fxservices.common.config import FxSettings, env_secret, env_str

log = logging.getLogger(__name__)


def ingest_task(**_context) -> list[dict]:
    from fxservices.pipeline.ingest import ingest

    s = FxSettings.from_env()
    token = env_secret("OANDA_API_TOKEN", "")
    results = ingest(s.pairs, s.data_dir, oanda_token=token or None,
                     oanda_env=env_str("OANDA_ENV", "practice"))
    return [asdict(r) for r in results]


def features_task(**_context) -> dict:
    from fxservices.pipeline.features import build_features, write_offline, write_training
    from fxservices.pipeline.ingest import read_bronze

    s = FxSettings.from_env()
    feats = build_features(read_bronze(s.data_dir, s.pairs))
    offline = write_offline(feats, s.data_dir)
    training = write_training(feats, s.data_dir)
    return {"rows": int(len(feats)), "offline": str(offline), "training": str(training)}


def materialize_task(**_context) -> dict:
    from fxservices.pipeline.materialize import materialize

    s = FxSettings.from_env()
    return materialize(s.data_dir, s.feast_repo_path)


def train_register_task(**context) -> dict:
    from fxservices.pipeline.features import training_path
    from fxservices.pipeline.train import result_dict, train_and_register

    s = FxSettings.from_env()
    tags = {}
    run = context.get("run_id")
    if run:
        tags["airflow_run_id"] = str(run)
    result = train_and_register(training_path(s.data_dir), tracking_uri=s.mlflow_tracking_uri,
                                model_name=s.model_name, alias=s.model_alias, tags=tags)
    return result_dict(result)


def run_all() -> dict:
    """The whole pipeline in one process (what the DAG does, without Airflow)."""
    return {
        "ingest": ingest_task(),
        "features": features_task(),
        "materialize": materialize_task(),
        "train_register": train_register_task(),
    }


if __name__ == "__main__":  # python3 -m fxservices.pipeline.tasks
    import json

    from fxservices.common.logs import setup_logging

    setup_logging()
    print(json.dumps(run_all(), indent=2, default=str))
