"""What the inference API's gunicorn master does before the app is imported: Feast's classes are
left without typeguard's instrumentation (fxservices.inference.imports), as in Python's optimized
mode. Each case in a fresh interpreter: the patch is process-wide, and this test process may
have imported Feast already."""
from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import REPO

pytestmark = pytest.mark.unit

CHECK = """
{setup}
from feast.on_demand_feature_view import OnDemandFeatureView
from feast.data_source import PushSource
names = OnDemandFeatureView.__init__.__code__.co_names + PushSource.__init__.__code__.co_names
print("instrumented" if "check_argument_types_internal" in names else "plain")
"""


def _feast_classes(setups: list[str], tmp_path) -> list[str]:
    """What CHECK prints after each setup, each in its own interpreter (run side by side)."""
    env = {"PYTHONPATH": str(REPO / "src"), "FEAST_USAGE": "False", "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-W", "ignore", "-c", CHECK.format(setup=setup)], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for setup in setups]
    answers = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
        answers.append(out.strip())
    return answers


def test_the_gunicorn_config_leaves_feast_uninstrumented(tmp_path):
    # the real config module, as gunicorn loads it in the master before the app; and without
    # it, Feast's import instruments the classes (what the API no longer pays for)
    assert _feast_classes(["import fxservices.inference.gunicorn_conf", ""], tmp_path) == ["plain", "instrumented"]
