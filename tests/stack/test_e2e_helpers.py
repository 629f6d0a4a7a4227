"""Pieces of `fxstack test` that need no stack."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.unit


def test_task_log_excerpt_starts_at_the_failure():
    from fxstack.stacks.fx_e2e import log_excerpt

    log = "\n".join([f"noise {i}" for i in range(100)] + ["ERROR - Task failed with exception", "Traceback (x)",
                                                          "ValueError: boom"] + ["x" * 1000] + ["tail"] * 50)
    out = log_excerpt(log).splitlines()
    assert out[0] == "ERROR - Task failed with exception" and out[2] == "ValueError: boom"
    assert len(out) == 30 and len(out[3]) < 320
    assert log_excerpt("a\nb").splitlines() == ["a", "b"]


def test_response_version_reads_the_api_field():
    from fxstack.stacks.fx_e2e import response_version

    assert response_version({"model_version": "3", "version": "x"}) == "3"
    assert response_version({"version": 4}) == "4"
    assert response_version({}) is None


def test_image_var_names_map_to_image_names():
    from fxstack.stack.lifecycle import image_var_to_name

    assert image_var_to_name("FX_AIRFLOW_SCHEDULER_IMAGE") == "fx-airflow-scheduler"
    assert image_var_to_name("REDIS_EXPORTER_IMAGE") == "redis-exporter"
    assert image_var_to_name("POSTGRES_IMAGE") == "postgres"


def test_one_shot_services_are_those_without_health_check_and_restart():
    from fxstack.stack.lifecycle import oneshot_services

    config = {"services": {"init": {"restart": "no"}, "api": {"restart": "unless-stopped",
                                                              "healthcheck": {"test": ["CMD", "true"]}},
                           "plain": {}}}
    assert oneshot_services(config) == {"init", "plain"}
