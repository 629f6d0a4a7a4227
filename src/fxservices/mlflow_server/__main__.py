"""Launcher of the MLflow tracking server + registry: `python3 -m fxservices.mlflow_server`.

Settings: settings.py. Creates (or upgrades) MLflow's tables once, as `mlflow server` does before
its workers start, then execs gunicorn with the workers of app.py, which open the stores
themselves: the backend store URI, with its password, is on no command line and in no
process's environment.
"""
from __future__ import annotations

import os
import sys

from fxservices.common.config import ConfigError

from .settings import open_stores, server


def main() -> None:
    try:
        srv = server()
    except ConfigError as exc:
        print(f"fx-mlflow: {exc}", file=sys.stderr)
        sys.exit(2)
    for directory, what in ((srv.artifacts, "MLFLOW_ARTIFACTS_DESTINATION"), (srv.prometheus_dir, "MLFLOW_PROMETHEUS_DIR")):
        if directory and "://" not in directory:
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                print(f"fx-mlflow: {what}={directory}: cannot create it ({exc}); mount a volume "
                      f"writable by uid {os.getuid()} there", file=sys.stderr)
                sys.exit(2)
    open_stores()
    print(f"fx-mlflow: exec {' '.join(srv.command)}", file=sys.stderr, flush=True)
    os.execve(srv.command[0], srv.command, {**os.environ, **srv.env})


if __name__ == "__main__":
    main()
