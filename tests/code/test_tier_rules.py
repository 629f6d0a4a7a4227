"""`./fx check` cannot pass by skipping: the tier rules of tests/tier_rules.py, run for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import prebuild
import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]


def run_pytest(tmp_path: Path, body: str, strict: bool, **env: str) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(
        f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nfrom tier_rules import *  # noqa\n"
        "from tier_rules import _unit_tests_start_no_server  # noqa\n")
    (tmp_path / "test_demo.py").write_text(body)
    environment = {**os.environ, "FX_CHECK_STRICT": "1" if strict else "", **env}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                           "--rootdir", str(tmp_path), str(tmp_path)],
                          capture_output=True, text=True, env=environment, cwd=tmp_path)


SKIPPING = """
import pytest
pytestmark = pytest.mark.integration
def test_needs_a_daemon():
    pytest.skip("Docker daemon unreachable")
def test_fine():
    pass
"""


def test_a_skip_is_a_skip_outside_check_and_a_failure_under_it(tmp_path):
    relaxed = run_pytest(tmp_path, SKIPPING, strict=False)
    assert relaxed.returncode == 0, relaxed.stdout
    assert re.search(r"^integration: 1 passed, 1 skipped in \d+\.\d min$", relaxed.stdout, re.M), relaxed.stdout
    assert "skipped test_demo.py::test_needs_a_daemon: Skipped: Docker daemon unreachable" in relaxed.stdout
    strict = run_pytest(tmp_path, SKIPPING, strict=True)
    assert strict.returncode == 1, strict.stdout
    assert "integration: 1 passed, 1 failed" in strict.stdout
    assert "a prerequisite is missing" in strict.stdout


ORDER = """
import pytest
@pytest.mark.integration
def test_collected_first():
    open("order", "a").write("integration\\n")
@pytest.mark.unit
def test_collected_second():
    open("order", "a").write("unit\\n")
"""


def test_the_unit_tier_runs_first(tmp_path):
    """Before any other tier, which may wait for the images that build beside it (prebuild.py)."""
    out = run_pytest(tmp_path, ORDER, strict=False)
    assert out.returncode == 0, out.stdout
    assert (tmp_path / "order").read_text() == "unit\nintegration\n"


class Item:
    def __init__(self, tier, *fixtures, params=None):
        self.tier, self.fixturenames = tier, fixtures
        if params:
            self.callspec = type("CallSpec", (), {"params": params})()


def tier(item):
    return item.tier


def test_the_build_beside_the_tests_starts_only_where_it_overlaps_them(monkeypatch):
    monkeypatch.delenv("FXSTACK_TEST_NO_BUILD", raising=False)
    unit, stack, local = Item("unit"), Item("integration", "stack"), Item("integration", "tmp_path")
    assert prebuild.wanted([unit, stack], tier) and prebuild.wanted([local, Item("security", "docker_client")], tier)
    assert not prebuild.wanted([stack], tier)                 # nothing to run beside it
    assert not prebuild.wanted([unit, local], tier)           # no image needed
    monkeypatch.setenv("FXSTACK_TEST_NO_BUILD", "1")
    assert not prebuild.wanted([unit, stack], tier)


def test_a_parameter_named_like_an_image_fixture_or_a_unit_test_never_waits_for_the_build():
    # test_k8s parametrizes `stack` ("fx", "bsopt"): a unit test that once waited 101 s for the build
    assert not prebuild.needs_images(Item("unit", "stack", params={"stack": "fx"}), tier)
    assert not prebuild.needs_images(Item("integration", "stack", params={"stack": "fx"}), tier)
    assert not prebuild.needs_images(Item("unit", "docker_client"), tier)
    assert prebuild.needs_images(Item("integration", "stack", "name", params={"name": "x"}), tier)


def test_tests_that_need_no_image_run_before_those_that_do():
    items = [Item("integration", "cpu_images"), Item("integration", "tmp_path"), Item("unit"),
             Item("security", "docker_client"), Item("contract"), Item("unit", "tmp_path")]
    ordered = list(items)
    prebuild.order(ordered, tier)
    assert ordered == [items[2], items[5], items[1], items[4], items[0], items[3]]


def test_a_test_without_a_tier_is_refused(tmp_path):
    out = run_pytest(tmp_path, "def test_nothing():\n    pass\n", strict=False)
    assert out.returncode != 0 and "without a tier marker" in out.stdout + out.stderr


def test_a_unit_test_that_starts_a_server_fails(tmp_path):
    body = ("import socket, pytest\npytestmark = pytest.mark.unit\n"
            "def test_serves():\n    s = socket.socket()\n    s.bind(('127.0.0.1', 0))\n    s.listen(1)\n")
    out = run_pytest(tmp_path, body, strict=False)
    assert out.returncode == 1 and "starts a server" in out.stdout


def test_with_the_daemon_stopped_the_real_integration_tests_fail(tmp_path):
    """The real fixture (tests/conftest.py's docker_client) against a daemon that is not there."""
    out = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q",
                          str(TESTS / "stack" / "test_failure_reports.py")],
                         capture_output=True, text=True, cwd=TESTS.parent,
                         env={**os.environ, "FX_CHECK_STRICT": "1",
                              "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"})
    assert out.returncode == 1, out.stdout[-2000:]
    assert "failed" in out.stdout and "Docker daemon unreachable" in out.stdout
    assert "integration: 3 failed" in out.stdout or "integration: 3 error" in out.stdout, out.stdout[-1500:]
