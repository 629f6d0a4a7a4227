"""The Airflow DAG `fx_pipeline`.

The unit test needs nothing. The others need Apache Airflow 2.10.5: they run it as a separate
program (the `airflow` next to this interpreter, on PATH, or named by FX_TEST_AIRFLOW), so
Airflow need not share the test environment. The end-to-end test runs the whole DAG with
`airflow dags test` against the real Redis and MLflow fixtures.
"""
from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import SRC, service_env

DAG_FILE = SRC / "fxservices" / "dags" / "fx_pipeline.py"
LIGHT = {"__future__", "datetime", "pendulum", "airflow", "airflow.operators.python"}


@pytest.mark.unit
def test_dag_file_top_level_imports_stay_light():
    tree = ast.parse(DAG_FILE.read_text())
    top = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            top.add(node.module)
    assert top <= LIGHT, f"heavy top-level imports in the DAG file: {top - LIGHT}"
    text = DAG_FILE.read_text()
    assert 'dag_id="fx_pipeline"' in text and "catchup=False" in text
    assert "ingest >> features >> materialize >> train_register" in text


def _airflow() -> Path:
    cand = os.environ.get("FX_TEST_AIRFLOW")
    if cand:
        p = Path(cand)
        if not p.exists():
            pytest.fail(f"FX_TEST_AIRFLOW={cand} does not exist")
        return p
    here = Path(sys.executable).parent / "airflow"
    if here.exists():
        return here
    found = shutil.which("airflow")
    if found:
        return Path(found)
    pytest.skip("service dependency not importable: apache-airflow==2.10.5 (install it, or "
                "point FX_TEST_AIRFLOW at an `airflow` executable)")


def _airflow_env(home: Path, **extra) -> dict:
    return service_env(AIRFLOW_HOME=home, AIRFLOW__CORE__DAGS_FOLDER=DAG_FILE.parent,
                       AIRFLOW__CORE__LOAD_EXAMPLES="False",
                       AIRFLOW__CORE__EXECUTOR="SequentialExecutor",
                       AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
                       **extra)


@pytest.mark.integration
def test_dagbag_loads_the_dag(tmp_path):
    airflow = _airflow()
    python = airflow.parent / "python"
    code = (
        "import json, time; t=time.monotonic();"
        "from airflow.models import DagBag;"
        f"b=DagBag(dag_folder={str(DAG_FILE.parent)!r}, include_examples=False);"
        "d=b.dags['fx_pipeline'];"
        "print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()},"
        " 'tasks': [t.task_id for t in d.topological_sort()],"
        " 'down': {t.task_id: sorted(t.downstream_task_ids) for t in d.tasks},"
        " 'schedule': str(d.schedule_interval), 'catchup': d.catchup,"
        " 'max_active_runs': d.max_active_runs, 'secs': time.monotonic()-t}))")
    r = subprocess.run([str(python if python.exists() else sys.executable), "-c", code],
                       env=_airflow_env(tmp_path), capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    info = json.loads(r.stdout.strip().splitlines()[-1])
    assert info["errors"] == {}
    assert info["tasks"] == ["ingest", "features", "materialize", "train_register"]
    assert info["down"] == {"ingest": ["features"], "features": ["materialize"],
                            "materialize": ["train_register"], "train_register": []}
    assert info["schedule"] == "None" and info["catchup"] is False


@pytest.mark.integration
@pytest.mark.slow
def test_dag_runs_end_to_end(tmp_path, redis_server, mlflow_server):
    import mlflow

    airflow = _airflow()
    data = tmp_path / "data"
    env = _airflow_env(tmp_path / "home", FX_DATA_DIR=data, REDIS_HOST=redis_server["host"],
                       REDIS_PORT=redis_server["port"], MLFLOW_TRACKING_URI=mlflow_server["uri"],
                       FX_MODEL_NAME="fx-direction-dag-test", FX_MODEL_ALIAS="serving",
                       FX_PAIRS="EUR_USD,USD_JPY")
    env.pop("OANDA_API_TOKEN", None)
    (tmp_path / "home").mkdir()
    r = subprocess.run([str(airflow), "db", "migrate"], env=env, capture_output=True,
                       text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    r = subprocess.run([str(airflow), "dags", "test", "fx_pipeline"], env=env,
                       capture_output=True, text=True, timeout=900)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-5000:]
    for task in ("ingest", "features", "materialize", "train_register"):
        assert f"Marking task as SUCCESS. dag_id=fx_pipeline, task_id={task}" in out, out[-5000:]
    assert "state=success" in out
    assert (data / "bronze" / "candles" / "EUR_USD.parquet").exists()
    assert (data / "feast" / "registry.db").exists()
    mv = mlflow.MlflowClient(mlflow_server["uri"]).get_model_version_by_alias(
        "fx-direction-dag-test", "serving")
    assert int(mv.version) >= 1
