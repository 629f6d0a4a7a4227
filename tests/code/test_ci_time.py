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


def test_a_run_of_several_processes_is_summed_per_group(tmp_path):
    """xdist names a grouped test `name@group` in the XML (pytest-xdist's loadgroup)."""
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_g.py").write_text(
        "import pytest\n"
        "@pytest.mark.unit\ndef test_unit():\n    pass\n"
        "@pytest.mark.unit\n@pytest.mark.xdist_group('shared-state')\ndef test_shared():\n    pass\n"
        "@pytest.mark.unit\n@pytest.mark.xdist_group('own-projects')\ndef test_own():\n    pass\n"
        "@pytest.mark.unit\n@pytest.mark.xdist_group('tests/test_g.py')\ndef test_free():\n    pass\n")
    xml = tmp_path / "run.xml"
    run = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
                          "-n", "2", "--dist", "loadgroup", f"--junit-xml={xml}", "-o", "markers=unit", "tests"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    assert {k: v["tests"] for k, v in ci_time.per_group(xml).items()} == {
        "shared-state": 1, "own-projects": 1, "one module each (MACHINE_FREE)": 1, "unit tier": 1}
    one = tmp_path / "one.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--rootdir", str(tmp_path),
                    f"--junit-xml={one}", "-o", "markers=unit", "-o", "markers=xdist_group", "tests"],
                   cwd=tmp_path, capture_output=True, text=True, check=True)
    assert ci_time.per_group(one) == {}
