"""Fixtures shared by every tier: the Docker daemon and the CPU images built by fxstack.

The tiers' own rules (a tier per test, no server in a unit test, no skip under `./fx check`,
the per-tier summary, the unit tier first) are in tier_rules.py; importing its hooks here registers
them. The images build beside the tests that need none, which run first (prebuild.py). Under
FX_TEST_PROCESSES=2 the tests that share machine state run in one of the processes (parallel.py)."""

from __future__ import annotations

import json
import os
import sys
import time

import prebuild
import pytest
import parallel
from parallel import (  # noqa: F401
    pytest_collection_modifyitems_shared_state, pytest_runtest_logreport_summary_lines,
    pytest_terminal_summary_from_workers)
from tier_rules import (  # noqa: F401
    _unit_tests_start_no_server, markers, pytest_collection_modifyitems, pytest_collectreport,
    pytest_runtest_logreport, pytest_runtest_makereport, pytest_terminal_summary, tier_of)


@pytest.hookimpl(specname="pytest_collection_modifyitems", trylast=True)
def pytest_collection_modifyitems_images_last(items):
    prebuild.order(items, _tier)
    parallel.order(items)


def pytest_collection_finish(session):
    if not session.config.option.collectonly and prebuild.wanted(session.items, _tier):
        from fxstack.paths import state_dir

        prebuild.start(state_dir())


def pytest_runtest_setup(item):
    parallel.yield_to_the_groups(item)
    if prebuild.needs_images(item, _tier):
        prebuild.wait()


def _tier(item) -> str:
    return tier_of(markers(item))


def pytest_sessionfinish(session, exitstatus):
    prebuild.stop(interrupted=exitstatus == pytest.ExitCode.INTERRUPTED)


def docker_or_skip():
    """The daemon, or a skip (a failure under `./fx check`, where it must be running)."""
    docker = pytest.importorskip("docker")
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:  # daemon absent: integration tests cannot run here
        pytest.skip(f"Docker daemon unreachable ({exc}); `./fx check` starts one")
    return client


@pytest.fixture(scope="session")
def docker_client():
    return docker_or_skip()


@pytest.fixture(scope="session")
def cpu_images(docker_client):
    """Every portable CPU image, built (cached layers reused) and loaded into Docker.

    Returns (builder, {name: BuiltImage}).
    """
    from fxstack.image.builder import Builder
    from fxstack.load.loader import load_images

    builder = Builder()
    images = builder.build()
    load_images(builder, images)
    return builder, {im.name: im for im in images}


# ---------------------------------------------------------------- the running stack (one per session)
# Integration tests share ONE stack per session (bring-up is expensive on 2 cores). It runs as its
# own Compose project (`fxstack-it`), with its own secrets file and free ports on 127.0.0.1, so it
# never touches a stack the user has running; it starts from nothing (`down --volumes` first) and
# is removed with its volumes at the end (FXSTACK_KEEP_STACK=1 keeps it for a look).
PORT_VARS = ("FX_AIRFLOW_PORT", "FX_MLFLOW_PORT", "FX_API_PORT", "FX_PROMETHEUS_PORT", "FX_GRAFANA_PORT",
             "FX_FINGPT_PORT")


def _free_port(taken: set[int] = set()) -> int:
    """A free port below the kernel's ephemeral range (32768+), where outgoing connections
    could take it between now and `docker-compose up`."""
    import random

    from fxstack.stack.docker_state import port_in_use

    low, high = parallel.port_range(20000, 32000)
    for _ in range(1000):
        port = random.randint(low, high - 1)
        if port not in taken and not port_in_use("127.0.0.1", port):
            taken.add(port)
            return port
    raise RuntimeError(f"no free port in {low}-{high - 1} on 127.0.0.1")


@pytest.fixture(scope="session")
def free_port():
    """_free_port for tests outside this folder: `from conftest import ...` would find whichever
    conftest module pytest imported first under that name (tests/nix has one too)."""
    return _free_port


def stack_target(stack_def, project: str, env_file, port_vars, **kw):
    """A Target of its own for a test stack: its project, its env file (and secrets beside it)
    and free ports, passed as overrides (nothing is written to os.environ)."""
    from fxstack.stack.target import Target

    return Target(stack_def, project=project, env_file=env_file,
                  overrides={var: str(_free_port()) for var in port_vars}, **kw)


@pytest.fixture(scope="session")
def stack(docker_client, tmp_path_factory):
    """The running test stack: {'up': WaitResult, 'project': name, 'env_file': path, 'target': Target}."""
    from fxstack.paths import state_dir
    from fxstack.stack import lifecycle
    from fxstack.stacks.fx import FX

    env_file = tmp_path_factory.mktemp("stack") / "secrets.env"
    # A hand-set admin password that starts with '-': `up` keeps it and appends the other keys.
    # The e2e test logs into Airflow's API with it, so airflow-init must have passed it through
    # as a value, not an option (a generated one that started with '-' once broke CI).
    env_file.write_text("AIRFLOW_ADMIN_PASSWORD=-dash-first-Zq8v3kP0mW7xT2yL5nB9\n")
    env_file.chmod(0o600)
    target = stack_target(FX, os.environ.get("FXSTACK_TEST_PROJECT", "fxstack-it"), env_file, PORT_VARS)
    build = os.environ.get("FXSTACK_TEST_NO_BUILD") != "1"
    try:
        lifecycle.down(target, volumes=True, out=sys.stderr)  # from nothing
        t0 = time.monotonic()
        result = lifecycle.up(target, build=build,
                              timeout=float(os.environ.get("FXSTACK_TEST_UP_TIMEOUT", "900")), out=sys.stderr)
        record = {"images_loaded_to_all_healthy_s": round(result.seconds, 1),
                  "up_including_image_check_s": round(time.monotonic() - t0, 1),
                  "per_service_ready_s": {k: round(v, 1) for k, v in sorted(result.became_ready.items())},
                  "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        try:
            state_dir().mkdir(parents=True, exist_ok=True)
            (state_dir() / "stack-timings.json").write_text(json.dumps(record, indent=2) + "\n")
        except OSError:
            pass
        print(f"\nstack up: {json.dumps(record)}", file=sys.stderr)
        yield {"up": result, "project": target.project_name, "env_file": env_file, "timings": record,
               "target": target}
    finally:
        if os.environ.get("FXSTACK_KEEP_STACK") != "1":
            try:
                lifecycle.down(target, volumes=True, out=sys.stderr)
            except Exception as exc:  # teardown must not hide the test result
                print(f"teardown: {exc}", file=sys.stderr)
