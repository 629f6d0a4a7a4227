"""FX pipeline steps (ingest -> features -> materialize -> train_register), plain functions that
the Airflow DAG (fxservices/dags/fx_pipeline.py) calls; fxservices.pipeline.tasks.run_all() runs
them in one process."""
