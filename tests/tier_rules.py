"""The rules of the test tiers, imported by tests/conftest.py: every test has a tier, unit tests
start no server, and under `./fx check` (FX_CHECK_STRICT=1) a missing prerequisite fails
instead of skipping. The run ends with one line per tier, with the minutes the tier took."""

from __future__ import annotations

import os
import socket

import pytest

TIERS = ("gpu", "slow", "cluster", "nixreal", "security", "contract", "integration", "unit")
# Tiers that may legitimately not run on a machine (no GPU, no seeded Nix inputs); their
# skips say why in the summary instead of failing the run.
OPTIONAL_TIERS = ("gpu", "nixreal")


def strict() -> bool:
    return os.environ.get("FX_CHECK_STRICT", "") not in ("", "0")


def tier_of(marker_names) -> str:
    return next((t for t in TIERS if t in marker_names), "untiered")


def markers(item) -> set[str]:
    """The item's marker names (not its keywords, which also hold node names such as `gpu`)."""
    return {m.name for m in item.iter_markers()}


_TIER_BY_NODE: dict[str, str] = {}
# Seconds per tier: setup, call and teardown of its tests, so a session fixture (images built, a
# stack brought up or down) counts for the tier of the test that first or last needed it.
_SECONDS: dict[str, float] = {}


def _reason(report) -> str:
    return report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)


def pytest_collection_modifyitems(config, items):
    for item in items:
        _TIER_BY_NODE[item.nodeid] = tier_of(markers(item))
    untiered = [n for n, t in _TIER_BY_NODE.items() if t == "untiered"]
    if untiered:
        raise pytest.UsageError("tests without a tier marker (unit, integration, security, contract, slow, gpu, "
                                "nixreal, cluster): " + ", ".join(untiered[:10]))
    # The unit tier first (in collection order, as every tier): it needs no image, so it runs while
    # the images build beside it (prebuild.py) instead of after them.
    items.sort(key=lambda item: _TIER_BY_NODE[item.nodeid] != "unit")


@pytest.fixture(autouse=True)
def _unit_tests_start_no_server(request, monkeypatch):
    """A test that listens on a socket is an integration test: a unit test that tries fails here."""
    if tier_of(markers(request.node)) != "unit":
        return

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} is marked unit but starts a server (listens on a "
                             "socket): mark it integration")

    monkeypatch.setattr(socket.socket, "listen", refuse)


def _tier_of_report(report) -> str:
    """The tier a report belongs to. Under pytest-xdist the reports come from the worker
    processes (with the tier set there, below) and the node ids carry an `@group` suffix."""
    return getattr(report, "fx_tier", None) or _TIER_BY_NODE.get(getattr(report, "nodeid", ""), "")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    report.fx_tier = tier_of(markers(item))
    if (strict() and report.skipped and not hasattr(report, "wasxfail")
            and tier_of(markers(item)) not in OPTIONAL_TIERS):
        report.outcome = "failed"
        report.longrepr = (f"a prerequisite is missing, and `./fx check` does not skip: {_reason(report)}\n"
                           "(scripts/bootstrap.sh installs and starts what the tiers need)")


def pytest_runtest_logreport(report):
    tier = _tier_of_report(report) or "untiered"
    _SECONDS[tier] = _SECONDS.get(tier, 0.0) + report.duration


def pytest_collectreport(report):
    if strict() and report.skipped and "nixreal" not in str(report.longrepr):
        report.outcome = "failed"


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """One line per tier: `unit: 312 passed in 2.9 min`, with failures and skips (and their reasons) named."""
    counts: dict[str, dict[str, int]] = {}
    skipped: dict[str, list[str]] = {}
    for outcome in ("passed", "failed", "skipped", "error"):
        for report in terminalreporter.stats.get(outcome, []):
            if outcome == "passed" and getattr(report, "when", "call") != "call":
                continue
            tier = _tier_of_report(report)
            if not tier:  # a whole module skipped at collection
                tier = "nixreal" if "nixreal" in str(getattr(report, "longrepr", "")) else "untiered"
            counts.setdefault(tier, {}).setdefault(outcome, 0)
            counts[tier][outcome] += 1
            if outcome == "skipped":
                skipped.setdefault(tier, []).append(f"{getattr(report, 'nodeid', '?')}: {_reason(report)}")
    if not counts:
        return
    terminalreporter.section("tiers")
    for tier in TIERS + ("untiered",):
        if tier not in counts:
            continue
        parts = [f"{n} {o}" for o in ("passed", "failed", "error", "skipped") if (n := counts[tier].get(o))]
        terminalreporter.write_line(f"{tier}: {', '.join(parts)} in {_SECONDS.get(tier, 0.0) / 60:.1f} min")
        for line in skipped.get(tier, [])[:5]:
            terminalreporter.write_line(f"  skipped {line}")
