"""tests/ci_time.py: the per-directory table of docs/benchmarks.md's CI time, from a real run's XML."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ci_time
import pytest

pytestmark = pytest.mark.unit


def test_a_runs_junit_xml_is_summed_per_test_directory(tmp_path):
    (tmp_path / "tests" / "alpha").mkdir(parents=True)
    (tmp_path / "tests" / "alpha" / "test_a.py").write_text(
        "import time, pytest\npytestmark = pytest.mark.unit\n"
        "def test_one():\n    pass\ndef test_two():\n    pass\n")
    (tmp_path / "tests" / "test_top.py").write_text("import pytest\n@pytest.mark.unit\ndef test_top():\n    pass\n")
    xml = tmp_path / "run.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
                          f"--junit-xml={xml}", "-o", "markers=unit", "tests"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    dirs = ci_time.per_directory(xml)
    assert {k: v["tests"] for k, v in dirs.items()} == {"tests/alpha": 2, "tests.test_top": 1}
    assert ci_time.main([str(xml), "--json", str(tmp_path / "t.json")]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["per_directory"]["tests/alpha"]["tests"] == 2
