"""The WSGI app each gunicorn worker of fx-mlflow loads: MLflow's tracking server and registry,
with both stores opened in this process from MLFLOW_BACKEND_STORE_URI[_FILE].

`mlflow server` hands the backend store URI to its gunicorn workers in their environment
(`_MLFLOW_SERVER_FILE_STORE`), where the database password could be read in /proc/<pid>/environ
for as long as the server runs. Opened here, the URI lives only in this process's memory; the
environment holds the file's path. The artifact settings stay in the environment: MLflow's
handlers read them there, and they hold no secret.
"""
from __future__ import annotations

from mlflow.server import app  # noqa: F401 (gunicorn loads `app`)

from .settings import open_stores

# the tables exist already: the launcher created or upgraded them before the workers started
open_stores()
