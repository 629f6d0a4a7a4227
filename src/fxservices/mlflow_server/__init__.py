"""Launcher of the MLflow tracking server (`python3 -m fxservices.mlflow_server`)."""
