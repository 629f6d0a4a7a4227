"""`./fx check` in two processes (tests/parallel.py): the tests that share machine state run in one
process, the tier summary, the workers' own summary lines and the no-skip rule hold, and one image
build serves both processes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import parallel
import prebuild
import pytest

pytestmark = pytest.mark.unit

TESTS = Path(__file__).resolve().parents[1]

CONFTEST = f"""
import sys
sys.path.insert(0, {str(TESTS)!r})
from tier_rules import *  # noqa
from tier_rules import _unit_tests_start_no_server  # noqa
from parallel import (pytest_collection_modifyitems_shared_state, pytest_runtest_logreport_summary_lines,  # noqa
                      pytest_terminal_summary_from_workers)
import os, pytest

@pytest.hookimpl(hookwrapper=True, specname="pytest_runtest_makereport")
def pytest_runtest_makereport_demo(item, call):  # a figure measured in a worker, as tests/nix's nixreal lines
    outcome = yield
    if os.environ.get("PYTEST_XDIST_WORKER"):
        outcome.get_result().fx_summary_lines = ["demo: measured in a worker"]
"""

# Eight tests that would share machine state (their module is not in parallel.MACHINE_FREE), one
# of them skipped, and unit tests that take long enough for both processes to get work.
BODY = """
import os, time, pytest

def record(name):
    with open("workers", "a") as f:
        f.write(f"{name} {os.environ['PYTEST_XDIST_WORKER']}\\n")

@pytest.mark.parametrize("n", range(8))
@pytest.mark.integration
def test_shared(n):
    record(f"shared{n}")
    time.sleep(0.2)
    if n == 7:
        pytest.skip("Docker daemon unreachable")

@pytest.mark.parametrize("n", range(8))
@pytest.mark.unit
def test_unit(n):
    record(f"unit{n}")
    time.sleep(0.2)
"""


def run_two(tmp_path: Path, strict: bool) -> subprocess.CompletedProcess:
    (tmp_path / "conftest.py").write_text(CONFTEST)
    (tmp_path / "test_demo.py").write_text(BODY)
    (tmp_path / "workers").unlink(missing_ok=True)
    # Not the outer run's worker: this run is a whole run of its own.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_XDIST_") and k != "PYTEST_ADDOPTS"}
    env["FX_CHECK_STRICT"] = "1" if strict else ""
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-n", "2",
                           "--dist", "loadgroup", "--no-loadscope-reorder", "--rootdir", str(tmp_path),
                           str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=tmp_path)


def test_shared_state_tests_run_in_one_process_and_the_tier_rules_hold(tmp_path):
    out = run_two(tmp_path, strict=True)
    assert out.returncode == 1, out.stdout          # the skip is a failure under ./fx check ...
    assert "a prerequisite is missing" in out.stdout
    assert re.search(r"^integration: 7 passed, 1 failed in \d+\.\d min$", out.stdout, re.M), out.stdout
    assert re.search(r"^unit: 8 passed in \d+\.\d min$", out.stdout, re.M), out.stdout
    assert out.stdout.count("demo: measured in a worker") == 1, out.stdout   # the summary a worker measured
    ran = dict(line.split() for line in (tmp_path / "workers").read_text().splitlines())
    assert len({w for name, w in ran.items() if name.startswith("shared")}) == 1, ran
    assert set(ran.values()) == {"gw0", "gw1"}, ran  # ... and both processes ran tests
    relaxed = run_two(tmp_path, strict=False)         # ... and a skip outside it
    assert relaxed.returncode == 0, relaxed.stdout
    assert re.search(r"^integration: 7 passed, 1 skipped in \d+\.\d min$", relaxed.stdout, re.M), relaxed.stdout


class Item:
    def __init__(self, nodeid, *fixtures, **params):
        self.nodeid, self.fixturenames = nodeid, fixtures
        if params:
            self.callspec = type("CallSpec", (), {"params": params})()
        self.marks = []

    def add_marker(self, mark):
        self.marks.append(mark.mark)

    def iter_markers(self, name):
        return (m for m in self.marks if m.name == name)

    def get_closest_marker(self, name):
        return next(self.iter_markers(name), None)


def test_only_checked_modules_leave_the_shared_group():
    free = "tests/builder/test_debian_drift.py::test_x"
    assert not parallel.needs_shared_state(Item(free, "tmp_path"), "integration")
    assert parallel.needs_shared_state(Item(free, "docker_client"), "integration")   # a daemon, wherever
    assert parallel.needs_shared_state(Item("tests/new/test_new.py::test_x"), "integration")  # unchecked
    assert not parallel.needs_shared_state(Item("tests/new/test_new.py::test_x"), "unit")


def test_tests_of_their_own_projects_form_a_group_and_the_groups_of_machine_state_come_last(monkeypatch):
    from fxstack.stacks.registry import STACKS

    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    items = [Item("tests/bsopt/test_bsopt_stack.py::test_up", "docker_client"),
             Item("tests/security/test_stack_security.py::test_kill[bsopt]", "docker_client", secured="bsopt"),
             Item("tests/security/test_stack_security.py::test_kill[fx]", "docker_client", secured="fx"),
             Item("tests/security/test_stack_security.py::test_every_stack_is_checked"),
             Item("tests/stack/test_stack_integration.py::test_dag", "stack"),
             Item("tests/builder/test_debian_drift.py::test_x", "tmp_path"),
             Item("tests/builder/test_specs.py::test_y")]
    tiers = {items[-1].nodeid: "unit"}
    parallel.group(items, lambda item: tiers.get(item.nodeid, "integration"))
    groups = {item.nodeid.split("::")[1]: [m.args[0] for m in item.iter_markers("xdist_group")] for item in items}
    own, shared = parallel.OWN_PROJECTS, parallel.SHARED
    assert groups == {"test_up": [own], "test_kill[bsopt]": [own], "test_kill[fx]": [shared],
                      "test_every_stack_is_checked": [shared], "test_dag": [shared],
                      "test_x": ["tests/builder/test_debian_drift.py"], "test_y": []}
    # in two processes the groups of machine state last; in three right after the unit tier
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    parallel.order(items)
    assert [i.nodeid.split("::")[1] for i in items] == [
        "test_x", "test_y", "test_up", "test_kill[bsopt]", "test_kill[fx]", "test_every_stack_is_checked", "test_dag"]
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "3")
    parallel.order(items)
    assert [i.nodeid.split("::")[1] for i in items] == [
        "test_y", "test_up", "test_kill[bsopt]", "test_kill[fx]", "test_every_stack_is_checked", "test_dag", "test_x"]
    # every stack but the session's runs beside SHARED in the module that walks the stacks
    for module, param in parallel.STACK_PARAMETRIZED.items():
        for stack in STACKS:
            item = Item(f"{module}::test_kill[{stack}]", "docker_client", **{param: stack})
            assert parallel.own_projects(item) == (stack != parallel.SESSION_STACK), stack
    assert parallel.SESSION_STACK in STACKS
    for module in (*parallel.OWN_PROJECT_MODULES, *parallel.STACK_PARAMETRIZED, *parallel.MACHINE_FREE):
        assert (TESTS.parent / module).is_file(), f"{module} in tests/parallel.py does not exist"


def test_each_process_picks_ports_from_a_range_of_its_own(monkeypatch):
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    assert parallel.port_range(20000, 32000) == (20000, 32000)
    monkeypatch.setenv("PYTEST_XDIST_WORKER_COUNT", "2")
    ranges = []
    for worker in ("gw0", "gw1"):
        monkeypatch.setenv("PYTEST_XDIST_WORKER", worker)
        ranges.append(parallel.port_range(20000, 32000))
    assert ranges == [(20000, 26000), (26000, 32000)]


def test_one_build_serves_every_process(tmp_path, monkeypatch):
    """The first process to claim the run's build starts it; the other waits for its `done` file."""
    # This run's own build (under FX_TEST_PROCESSES=2 its claim or `done` file) stays as it is.
    for name in ("_proc", "_done", "_log", "_started"):
        monkeypatch.setattr(prebuild, name, getattr(prebuild, name))
    prebuild._proc = prebuild._done = None
    monkeypatch.setenv("PYTEST_XDIST_TESTRUNUID", "demo")
    monkeypatch.setattr(prebuild, "_SCRIPT", "import time; time.sleep(1)")
    stale, recent = tmp_path / "test-prebuild-old.done", tmp_path / "test-prebuild-other.claim"
    stale.write_text("0\n"), recent.write_text("")
    os.utime(stale, (0, 0))                                       # a run of long ago: removed
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw0")
    prebuild.start(tmp_path)
    first = prebuild._proc
    assert first is not None and (tmp_path / "test-prebuild-demo.claim").exists()
    assert not stale.exists() and recent.exists()                 # a run that may be going: kept
    prebuild._proc = prebuild._done = None                       # the other process's view
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw1")
    prebuild.start(tmp_path)
    assert prebuild._proc is None and prebuild._done == tmp_path / "test-prebuild-demo.done"
    prebuild.wait()                                               # returns once the build wrote `done`
    assert (tmp_path / "test-prebuild-demo.done").read_text().strip() == "0"
    assert first.wait() == 0


def test_in_three_processes_the_one_that_takes_machine_free_work_yields_to_the_groups():
    """A process's first MACHINE_FREE test lowers its priority (in a child process here: a
    priority once lowered stays lowered); a group's test or a run of two processes does not."""
    script = f"""
import os, sys
sys.path.insert(0, {str(TESTS)!r})
import parallel, pytest
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_parallel import Item

def niceness_after(count, group):
    os.environ.update(PYTEST_XDIST_WORKER="gw2", PYTEST_XDIST_WORKER_COUNT=str(count))
    parallel._yielded = False
    item = Item("tests/x.py::test_x")
    item.add_marker(pytest.mark.xdist_group(group))
    before = os.nice(0)
    parallel.yield_to_the_groups(item)
    return os.nice(0) - before

print(niceness_after(2, "tests/x.py"), niceness_after(3, parallel.SHARED), niceness_after(3, parallel.OWN_PROJECTS),
      niceness_after(3, "tests/x.py"))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["0", "0", "0", "5"], out.stdout
