"""The statsd -> Prometheus bridge (compose/statsd-exporter/) with real UDP and HTTP on 127.0.0.1."""

from __future__ import annotations

import importlib.util
import socket
import subprocess
import sys
import time

import pytest
import requests
import yaml

from fxstack.paths import repo_root
from fxstack.stack.docker_state import free_port

pytestmark = pytest.mark.unit

SCRIPT = repo_root() / "compose" / "statsd-exporter" / "statsd_exporter.py"
MAPPING = repo_root() / "compose" / "statsd-mapping.yml"


def load_module():
    spec = importlib.util.spec_from_file_location("fx_statsd_exporter", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_mapping_turns_airflow_names_into_labelled_metrics():
    mod = load_module()
    store = mod.Store(mod.Mapper(yaml.safe_load(MAPPING.read_text())))
    store.feed("airflow.dagrun.duration.success.fx_pipeline:2500|ms\n"
               "airflow.ti.finish.fx_pipeline.train_register.success:1|c\n"
               "airflow.ti.finish.fx_pipeline.train_register.success:1|c|@0.5\n"
               "airflow.executor.open_slots:16|g\nairflow.executor.open_slots:-2|g\n"
               "airflow.some.thing:3|c\ngarbage line\n")
    text = store.render()
    assert 'airflow_dagrun_duration_seconds_count{dag_id="fx_pipeline",state="success"} 1' in text
    assert 'airflow_dagrun_duration_seconds_sum{dag_id="fx_pipeline",state="success"} 2.5' in text
    assert 'airflow_dagrun_duration_seconds_bucket{dag_id="fx_pipeline",state="success",le="5.0"} 1' in text
    assert 'airflow_dagrun_duration_seconds_bucket{dag_id="fx_pipeline",state="success",le="1.0"} 0' in text
    assert 'airflow_ti_finish_total{dag_id="fx_pipeline",state="success",task_id="train_register"} 3.0' in text
    assert 'airflow_executor_slots{kind="open"} 14.0' in text
    assert "airflow_some_thing 3.0" in text
    assert "statsd_exporter_lines_invalid_total 1" in text


def test_served_over_udp_and_http():
    statsd_port, web_port = free_port(socket.SOCK_DGRAM), free_port()
    proc = subprocess.Popen([sys.executable, str(SCRIPT), f"--mapping-config={MAPPING}",
                             f"--statsd-port={statsd_port}", f"--web-port={web_port}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert requests.get(f"http://127.0.0.1:{web_port}/-/healthy", timeout=2).status_code == 200
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "exporter did not start"
                time.sleep(0.2)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"airflow.dagrun.duration.failed.fx_pipeline:1000|ms", ("127.0.0.1", statsd_port))
        s.close()
        body = ""
        for _ in range(50):
            body = requests.get(f"http://127.0.0.1:{web_port}/metrics", timeout=2).text
            if "airflow_dagrun_duration_seconds_count" in body:
                break
            time.sleep(0.1)
        assert 'airflow_dagrun_duration_seconds_count{dag_id="fx_pipeline",state="failed"} 1' in body
        r = requests.get(f"http://127.0.0.1:{web_port}/nope", timeout=2)
        assert r.status_code == 404 and "/metrics" in r.text
    finally:
        proc.terminate()
        proc.wait(timeout=10)
