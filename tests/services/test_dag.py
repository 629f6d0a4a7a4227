"""The Airflow DAG `fx_pipeline`.

The unit test needs nothing. The DagBag test loads the DAG the way the scheduler does, with
Airflow's own DagBag inside the fx-airflow-scheduler image built by fxstack (the DAG file is in
its app layer, so an edit rebuilds that one layer). The end-to-end test needs Apache Airflow
2.10.5 on the host (the `airflow` next to this interpreter, on PATH, or named by
FX_TEST_AIRFLOW) and runs the whole DAG with `airflow dags test` against the real Redis and
MLflow fixtures.
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


# Runs inside the image, as the image's user: what the scheduler's DagBag makes of the DAG
# folder, and whether each task's callable exists in fxservices.pipeline.tasks.
DAGBAG_PROBE = """
import json
from airflow.models import DagBag
from fxservices.pipeline import tasks
bag = DagBag(include_examples=False)
dag = bag.dags.get("fx_pipeline")
info = {"errors": {k: str(v) for k, v in bag.import_errors.items()}, "dags": sorted(bag.dags)}
if dag is not None:
    info.update(
        order=[t.task_id for t in dag.topological_sort()],
        downstream={t.task_id: sorted(t.downstream_task_ids) for t in dag.tasks},
        operators={t.task_id: type(t).__name__ for t in dag.tasks},
        callables={t.task_id: callable(getattr(tasks, t.python_callable.__name__, None))
                   and t.python_callable.__name__ for t in dag.tasks},
        schedule=str(dag.schedule_interval), catchup=dag.catchup,
        max_active_runs=dag.max_active_runs, retries=[t.retries for t in dag.tasks])
print("FX-DAGBAG " + json.dumps(info))
"""


@pytest.fixture(scope="module")
def airflow_image(docker_client):
    """fx-airflow-scheduler as fxstack builds it from this checkout, loaded into Docker."""
    from fxstack.image.builder import Builder
    from fxstack.load.loader import load_images

    builder = Builder()
    (image,) = builder.build(["fx-airflow-scheduler"])
    load_images(builder, [image])
    return image.ref


@pytest.mark.integration
def test_dagbag_in_the_airflow_image(docker_client, airflow_image):
    out = docker_client.containers.run(
        airflow_image, ["python3", "-c", DAGBAG_PROBE], remove=True, stdout=True,
        stderr=False, network_mode="none", environment={"AIRFLOW_HOME": "/tmp/airflow"})
    line = [x for x in out.decode().splitlines() if x.startswith("FX-DAGBAG ")][-1]
    info = json.loads(line.removeprefix("FX-DAGBAG "))
    assert info["errors"] == {} and info["dags"] == ["fx_pipeline"], info
    assert info["order"] == ["ingest", "features", "materialize", "train_register"]
    assert info["downstream"] == {"ingest": ["features"], "features": ["materialize"],
                                  "materialize": ["train_register"], "train_register": []}
    assert set(info["operators"].values()) == {"PythonOperator"}
    assert info["callables"] == {"ingest": "ingest_task", "features": "features_task",
                                 "materialize": "materialize_task",
                                 "train_register": "train_register_task"}
    assert info["schedule"] == "None" and info["catchup"] is False
    assert info["max_active_runs"] == 1 and info["retries"] == [1, 1, 1, 1]


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
