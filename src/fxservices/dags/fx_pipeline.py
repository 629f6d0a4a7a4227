"""Airflow DAG `fx_pipeline`: ingest -> features -> materialize -> train_register.

Top-level imports stay light (the scheduler parses this file often): the task callables live in
fxservices.pipeline.tasks and import pandas/feast/mlflow/xgboost only when a task runs (on the
Celery worker). Triggered by hand or through the REST API (no schedule).
"""
from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow import DAG
from airflow.operators.python import PythonOperator


def _call(name: str):
    def run(**context):
        # No setup_logging() here: Airflow routes a task's stderr into its task logger, so a
        # root handler writing to stderr would feed itself until RecursionError. Airflow's own
        # task logging already captures the pipeline's loggers.
        from fxservices.pipeline import tasks

        return getattr(tasks, name)(**context)

    run.__name__ = name
    return run


default_args = {
    "owner": "fx",
    "retries": 1,
    "retry_delay": timedelta(seconds=20),
    "execution_timeout": timedelta(minutes=20),
}

with DAG(
    dag_id="fx_pipeline",
    description="FX candles -> features -> Feast online store -> XGBoost model registered in MLflow",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["fx", "feast", "mlflow"],
) as dag:
    ingest = PythonOperator(task_id="ingest", python_callable=_call("ingest_task"))
    features = PythonOperator(task_id="features", python_callable=_call("features_task"))
    materialize = PythonOperator(task_id="materialize", python_callable=_call("materialize_task"))
    train_register = PythonOperator(task_id="train_register",
                                    python_callable=_call("train_register_task"))

    ingest >> features >> materialize >> train_register
