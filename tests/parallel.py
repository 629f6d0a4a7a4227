"""`./fx check` in several test processes (pytest-xdist, `--dist loadgroup`), imported by
tests/conftest.py.

FX_TEST_PROCESSES sets the number of processes (`./fx check`'s default: one on one core, two on two
or three, three on four or more); above one, `./fx check` passes `-n N --dist loadgroup
--no-loadscope-reorder`. What may run at the same time:

- unit tests: any of them, on either process (no server, no Docker, their own tmp_path);
- tests that need no shared machine state (MACHINE_FREE: root filesystem builds in their own
  directories, services on free 127.0.0.1 ports, Nix evaluations): either process, a module's
  tests together (its module fixtures are made once);
- Docker tests that touch only what they make themselves (OWN_PROJECTS: bsopt's stack tests, the
  guides, the load balancer, the quick benchmark): one xdist group, run beside SHARED;
- every other test (the FX session stack, published ports, images loaded or removed, `gc`/prune,
  machine-wide listings of containers or volumes, the host's own packages) is in one xdist
  group, SHARED, which xdist runs in one process, in collection order. A test module that is not
  listed below is in SHARED: a new module is safe by default and only faster once someone has
  checked where it belongs.

The queue's order is `order`'s, and xdist keeps it (`--no-loadscope-reorder`; its default hands
the largest group out first, to a process that would then sit waiting for the image build). The
image build beside the tests (prebuild.py) is started once per run, by whichever process finishes collecting first, and every
process waits for the same build (a file it writes when done). Each process takes its test ports
from its own range (`port_range`), so two stacks never pick the same one.
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
    "tests/bsopt/test_worker_alive.py",          # a Celery worker and a redis-server of its own
})
# Docker tests that touch only what they make themselves: Compose projects of their own (not the
# FX session stack), containers and networks under names of their own, the volumes they find
# through their own containers, free ports from their process's range; images they build and load
# as every process does (images.env and the local registry's start are under a file lock). They
# form one xdist group, OWN_PROJECTS, run beside SHARED.
OWN_PROJECTS = "own-projects"
OWN_PROJECT_MODULES = frozenset({
    "tests/bsopt/test_bsopt_stack.py",      # projects bsopt-it, and its dev copy's
    "tests/stack/test_custody_bsopt.py",    # project bsopt-custody
    "tests/docs/test_guides.py",            # projects fxguide-*; it forgets only its own images.env lines
    "tests/cluster/test_load_balancer.py",  # containers and a network named fxlb-<random>
    "tests/bench/test_bench_quick.py",       # bench-mini and labelled baseline images, states of its own
})
# Modules whose tests take the stack as this parameter: each stack but the one of the session
# fixture `stack` (tests/conftest.py; the SHARED tests use it) is a project of its own.
STACK_PARAMETRIZED = {"tests/security/test_stack_security.py": "secured"}
SESSION_STACK = "fx"
# Fixtures that reach the Docker daemon: a test that asks for one is in SHARED wherever it lives,
# unless it is in OWN_PROJECTS.
DOCKER_FIXTURES = frozenset({"docker_client", "cpu_images", "stack"})


def worker_id() -> str:
    """`gw0`, `gw1`, ... in an xdist worker; empty in a run of one process."""
    return os.environ.get("PYTEST_XDIST_WORKER", "")


def worker_count() -> int:
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)


def port_range(low: int, high: int) -> tuple[int, int]:
    """This process's share of [low, high): all of it in a run of one process, else the worker's
    own slice (gw0 the first, gw1 the second, ...), so that ports two processes pick at the same
    time cannot meet."""
    worker, count = worker_id(), worker_count()
    if not worker or count < 2:
        return low, high
    index = int(worker.removeprefix("gw") or 0) % count
    size = (high - low) // count
    return low + index * size, low + (index + 1) * size


def module_path(item) -> str:
    return item.nodeid.split("::", 1)[0]


def params(item) -> dict:
    """The test's parameters ({} for one that has none)."""
    return getattr(getattr(item, "callspec", None), "params", {})


def own_projects(item) -> bool:
    """Whether the test touches only Docker objects of its own (OWN_PROJECT_MODULES, or a stack
    parameter naming another stack than the session's)."""
    module = module_path(item)
    if module in STACK_PARAMETRIZED:
        stack = params(item).get(STACK_PARAMETRIZED[module])
        return stack is not None and stack != SESSION_STACK
    return module in OWN_PROJECT_MODULES


def needs_shared_state(item, tier: str) -> bool:
    if tier == "unit" or own_projects(item):
        return False
    if DOCKER_FIXTURES & (set(getattr(item, "fixturenames", ())) - set(params(item))):
        return True
    return module_path(item) not in MACHINE_FREE


def group_of(item, tier: str) -> str:
    """The xdist group a test runs in: '' (any process), SHARED, OWN_PROJECTS, or its module."""
    if tier == "unit":
        return ""
    if own_projects(item):
        return OWN_PROJECTS
    if needs_shared_state(item, tier):
        return SHARED
    return module_path(item)  # one process per module: its module fixtures are made once


def group(items, tier_of) -> None:
    """Mark every non-unit test with its xdist group (a no-op in one process: the marks only mean
    something to `--dist loadgroup`)."""
    if not worker_id():
        return
    for item in items:
        name = group_of(item, tier_of(item))
        if name:
            item.add_marker(pytest.mark.xdist_group(name))


def marked_group(item) -> str:
    """The xdist group `group` marked the test with ('' for none)."""
    mark = item.get_closest_marker("xdist_group")
    return str(mark.args[0]) if mark and mark.args else ""


def holds_machine_state(item) -> bool:
    return marked_group(item) in (SHARED, OWN_PROJECTS)


def order(items) -> None:
    """Where the groups of machine state (SHARED, OWN_PROJECTS) go in the queue; the order within
    each part is kept (called after prebuild.order, whose unit tier, no image, images it refines).

    Both groups wait for the image build. In two processes they come last: the other work keeps
    the build company, and the groups start when it is done. In three or more they come right
    after the unit tier: two processes take them (and wait for the build) while the others work
    through the rest beside the build and then beside the groups, which spend about a quarter of
    their time waiting on containers. On two cores a third process barely helped (737 against 744 s
    in all) and slowed the groups, the longest path (420 against 370 s after the build), so two is
    the default there (docs/benchmarks.md, "CI time")."""
    if not worker_id():
        return
    if worker_count() >= 3:
        items.sort(key=lambda item: 0 if not marked_group(item) else 1 if holds_machine_state(item) else 2)
    else:
        items.sort(key=holds_machine_state)


def yield_to_the_groups(item) -> None:
    """In three processes or more, a process's first test of a MACHINE_FREE module lowers its
    priority for the rest of the run: from then on it takes only such work, beside the build and
    the two groups of machine state, which are the run's longest path, and takes their idle time
    (a quarter of theirs: they wait on containers) rather than their CPU."""
    global _yielded
    if _yielded or worker_count() < 3:
        return
    if marked_group(item) and not holds_machine_state(item):
        os.nice(5)  # not 10: a server these tests start must still answer their polls in time
        _yielded = True


_yielded = False


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
