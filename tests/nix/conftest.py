from __future__ import annotations

import os

import pytest

import fxnix
import realinputs


@pytest.fixture(scope="session")
def snapshot(tmp_path_factory):
    """One copy of what the flake reads, taken once: the baseline and every edited copy come from
    it, so files changing in the working tree during the run cannot show up as differences."""
    return fxnix.copy_repo(tmp_path_factory.mktemp("snapshot") / "repo")


@pytest.fixture(scope="session")
def flake(snapshot) -> fxnix.Flake:
    if fxnix.NIX_INSTANTIATE is None:
        pytest.skip(fxnix.SKIP_REASON)
    return fxnix.evaluate_flake(snapshot)


@pytest.fixture(scope="session")
def specs(snapshot) -> dict:
    """The Python loader's resolved specs (the reference both paths follow)."""
    return fxnix.python_specs(snapshot)


@pytest.fixture()
def repo_copy(tmp_path, snapshot):
    """A copy of the snapshot, to edit."""
    return fxnix.copy_repo(tmp_path / "repo", snapshot)


def _nixreal_selected(config) -> bool:
    """Whether the -m expression of this run lets nixreal tests in."""
    expr = config.getoption("markexpr", "") or ""
    if not expr:
        return True
    try:
        from _pytest.mark.expression import Expression
        return Expression.compile(expr).evaluate(lambda name: name == "nixreal")
    except Exception:
        return "nixreal" in expr


def measured_lines(config) -> list[str]:
    """What the nixreal tests measured, one line each (empty before any of them ran)."""
    stash, lines = config.stash, []
    if realinputs.OUTPUTS_KEY in stash:
        ok, total = stash[realinputs.OUTPUTS_KEY]
        lines.append(f"nixreal: {ok}/{total} outputs instantiate")
        if realinputs.WHEELS_KEY in stash:
            n, bad = stash[realinputs.WHEELS_KEY]
            lines.append(f"nixreal: wheel selection checked for {n} locked packages, {bad} errors")
        if realinputs.SAME_FILES_KEY in stash:
            same, images = stash[realinputs.SAME_FILES_KEY]
            lines.append(f"nixreal: {same}/{images} images install the same files as the portable builder")
    return lines


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under several test processes the summary is written by the controlling process, which has
    none of the workers' stash: each report carries the lines so far (tests/parallel.py prints them)."""
    outcome = yield
    if os.environ.get("PYTEST_XDIST_WORKER") and (lines := measured_lines(item.config)):
        outcome.get_result().fx_summary_lines = lines


def pytest_terminal_summary(terminalreporter, config):
    """One line on the nixreal tier whenever it could have run: what it measured, or that it
    did not run and why (never a silent pass)."""
    if not _nixreal_selected(config):
        return
    lines = measured_lines(config)
    for line in lines:
        terminalreporter.write_line(line)
    if lines:
        return
    reason = realinputs.why_not()
    if reason is not None:
        terminalreporter.write_line(f"nixreal: did not run: {reason}")
