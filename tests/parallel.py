"""`./fx check` in two test processes (pytest-xdist, `--dist loadgroup`), imported by tests/conftest.py.

FX_TEST_PROCESSES sets the number of processes; `./fx check` passes `-n N --dist loadgroup` when
it is above 1 (the default is 1: one process, as before). What may run at the same time:

- unit tests: any of them, on either process (no server, no Docker, their own tmp_path);
- tests that need no shared machine state (MACHINE_FREE: root filesystem builds in their own
  directories, services on free 127.0.0.1 ports, Nix evaluations): either process, a module's
  tests together (its module fixtures are made once);
- every other test (a running stack, a Compose project, published ports, images loaded into the
  daemon, `gc`/prune, "nothing left behind" checks, the guides, the benchmark's clean-up, the
  host's own packages) is in one xdist group, SHARED, which xdist runs in one process, in
  collection order. A test module that is not listed below is in SHARED: a new module is safe
  by default and only faster once someone has checked it belongs to MACHINE_FREE.

The image build beside the tests (prebuild.py) is started once per run, by whichever process
finishes collecting first, and every process waits for the same build (a file it writes when done).
"""

from __future__ import annotations

import os

import pytest
from tier_rules import markers, tier_of

SHARED = "shared-state"
# Non-unit modules that touch no state outside their own temporary directories and free ports.
MACHINE_FREE = frozenset({
    "tests/builder/test_debian_drift.py",        # mmdebstrap into tmp_path, a private apt state
    "tests/builder/test_reproducible.py",        # two builds, each with its own state and cache
    "tests/nix/test_nix_real.py",                # nix-instantiate --readonly-mode
    "tests/contract/test_openapi.py",            # uvicorn/gunicorn on free ports
    "tests/services/test_fingpt_server.py",
    "tests/services/test_gunicorn.py",
    "tests/services/test_inference.py",
    "tests/services/test_inference_first_model.py",
    "tests/services/test_mlflow_server.py",
    "tests/services/test_postgres_entrypoint.py",  # a temporary PGDATA on a free port
    "tests/bsopt/test_scraper_host.py",
    "tests/bsopt/test_scrape_requests.py",       # its own redis-server on a free port
})
# Fixtures that reach the Docker daemon: a test that asks for one is in SHARED wherever it lives.
DOCKER_FIXTURES = frozenset({"docker_client", "cpu_images", "stack"})


def worker_id() -> str:
    """`gw0`, `gw1`, ... in an xdist worker; empty in a run of one process."""
    return os.environ.get("PYTEST_XDIST_WORKER", "")


def module_path(item) -> str:
    return item.nodeid.split("::", 1)[0]


def needs_shared_state(item, tier: str) -> bool:
    if tier == "unit":
        return False
    params = getattr(getattr(item, "callspec", None), "params", {})
    if DOCKER_FIXTURES & (set(getattr(item, "fixturenames", ())) - set(params)):
        return True
    return module_path(item) not in MACHINE_FREE


def group(items, tier_of) -> None:
    """Mark every test that uses shared machine state with the SHARED xdist group (a no-op in one
    process: the mark only means something to `--dist loadgroup`)."""
    if not worker_id():
        return
    for item in items:
        tier = tier_of(item)
        if needs_shared_state(item, tier):
            item.add_marker(pytest.mark.xdist_group(SHARED))
        elif tier != "unit":
            # One process per module: its module fixtures (a root filesystem, a server) are made once.
            item.add_marker(pytest.mark.xdist_group(module_path(item)))


# Before pytest-xdist's own hook, which reads the xdist_group marks into the node ids.
@pytest.hookimpl(specname="pytest_collection_modifyitems", tryfirst=True)
def pytest_collection_modifyitems_shared_state(items):
    group(items, lambda item: tier_of(markers(item)))


# Summary lines the workers' reports carry (tests/nix/conftest.py's nixreal figures), for the
# controlling process, which ran no test and so has none of its own: the latest list wins.
_SUMMARY_LINES: list[str] = []


@pytest.hookimpl(specname="pytest_runtest_logreport")
def pytest_runtest_logreport_summary_lines(report):
    lines = getattr(report, "fx_summary_lines", None)
    if lines and not worker_id():
        _SUMMARY_LINES[:] = lines


@pytest.hookimpl(specname="pytest_terminal_summary")
def pytest_terminal_summary_from_workers(terminalreporter):
    for line in _SUMMARY_LINES:
        terminalreporter.write_line(line)
