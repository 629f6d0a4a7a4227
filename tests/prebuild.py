"""The images' build beside the tests that need no image.

On a new machine the first test that needs an image builds every CPU image from nothing
(downloads, root filesystems, layers): minutes of mostly network and one core. The unit tier and
the integration tests that need no image (the Debian drift and reproducibility builds, the
services on local processes, the contract tier) keep the other core busy, so the run starts that
build in a subprocess as soon as the tests are collected, runs those tests first (unit tier
first, then the rest, each in collection order) and holds the first test that needs an image
until the build has finished. The build is the builder's own (`Builder().build()` into the usual
state), so the fixtures that build afterwards find every layer cached; if it fails, those fixtures
build again and report the error where it belongs.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# Fixtures that build or load images (bsopt's modules have their own docker_client).
NEEDS_IMAGES = frozenset({"cpu_images", "stack", "docker_client"})
_SCRIPT = "from fxstack.image.builder import Builder; Builder().build()"

_proc: subprocess.Popen | None = None
_started = 0.0
_log: Path | None = None
# In a run of several processes (tests/parallel.py) one build serves them all: the process
# that claims `_claim` starts it, and the build writes its exit status to `_done`, which the
# others wait for.
_done: Path | None = None


def _run_files(log_dir: Path) -> tuple[Path, Path] | None:
    """(claim, done) files of this xdist run, or None in a run of one process."""
    run = os.environ.get("PYTEST_XDIST_TESTRUNUID", "")
    if not run or not os.environ.get("PYTEST_XDIST_WORKER"):
        return None
    return log_dir / f"test-prebuild-{run}.claim", log_dir / f"test-prebuild-{run}.done"


def needs_images(item, tier_of) -> bool:
    """A test outside the unit tier that asks for one of NEEDS_IMAGES as a fixture (a parameter
    of the same name, as test_k8s's `stack`, is not one)."""
    if tier_of(item) == "unit":
        return False
    params = getattr(getattr(item, "callspec", None), "params", {})
    return bool(NEEDS_IMAGES & (set(getattr(item, "fixturenames", ())) - set(params)))


def order(items, tier_of) -> None:
    """The unit tier, then the other tests that need no image, then those that do (a stable
    sort: collection order within each group)."""
    items.sort(key=lambda item: (tier_of(item) != "unit", needs_images(item, tier_of)))


def wanted(items, tier_of) -> bool:
    """Only where it overlaps something: tests that need no image to run beside it and a later
    test that needs the images. FXSTACK_TEST_NO_BUILD=1 (images already loaded) opts out."""
    if os.environ.get("FXSTACK_TEST_NO_BUILD") == "1":
        return False
    needs = [needs_images(item, tier_of) for item in items]
    return any(needs) and not all(needs)


def start(log_dir: Path) -> None:
    global _proc, _started, _log, _done
    if _proc is not None or _done is not None:
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    _started = time.monotonic()
    shared = _run_files(log_dir)
    # Below the tests' priority in one process, where the tests are the longest path and the build
    # only has to be done before the first image test. In several, every group of machine state
    # waits for it: it is the longest path, and runs at theirs.
    command = [sys.executable, "-c", _SCRIPT]
    if shared is None:
        command = ["nice", "-n", "10", *command]
    else:
        claim, _done = shared
        _forget_other_runs(log_dir, claim, _done)
        try:
            os.close(os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # another process of this run started it: wait() waits for its `done` file
        # The status is written to a temporary name and renamed: a reader never sees half of it.
        command = ["sh", "-c", '"$@"; echo $? > "$0.tmp" && mv "$0.tmp" "$0"', str(_done), *command]
    _log = log_dir / "test-prebuild.log"
    with open(_log, "w") as out:
        _proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True)


def _forget_other_runs(log_dir: Path, *ours: Path) -> None:
    """Claim and `done` files of earlier runs (no run lasts a day; a run still going keeps its own)."""
    for old in log_dir.glob("test-prebuild-*.*"):
        if old.suffix in (".claim", ".done") and old not in ours:
            try:
                if time.time() - old.stat().st_mtime > 86400:
                    old.unlink()
            except FileNotFoundError:
                pass  # the other process of a run removed it first


def wait() -> None:
    """Block until the build has finished (at once when none was started or it already has)."""
    global _proc, _done
    if _proc is None and _done is None:
        return
    rc = _proc.wait() if _proc is not None else 1
    if _done is not None:
        # The claim's owner may be gone before its build is (a crashed process): an hour is
        # longer than any clean build here, and the fixtures build whatever is still missing.
        deadline = time.monotonic() + 3600
        while not _done.exists() and time.monotonic() < deadline:
            time.sleep(1)
        rc = int(_done.read_text().strip() or "1") if _done.exists() else 1
    _proc = _done = None
    took = time.monotonic() - _started
    if rc == 0:
        print(f"\nimages built beside the unit tier in {took:.0f} s", file=sys.stderr)
    else:
        print(f"\nthe build beside the unit tier failed after {took:.0f} s (rc {rc}, {_log}); the fixtures "
              "build again and report the error", file=sys.stderr)


def stop(interrupted: bool = True) -> None:
    """An interrupted run ends its build too (every cache write is atomic: nothing half-written stays).
    In a run of several processes a process that ends normally lets the build finish: another
    process may be waiting for it."""
    global _proc, _done
    if _proc is not None and _done is not None and not interrupted:
        _proc.wait()
    if _proc is not None and _proc.poll() is None:
        # The whole process group: under several processes the build runs below a `sh`.
        _signal_group(signal.SIGTERM)
        try:
            _proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _signal_group(signal.SIGKILL)
            _proc.wait()
    _proc = _done = None


def _signal_group(sig: int) -> None:
    try:
        os.killpg(_proc.pid, sig)
    except ProcessLookupError:
        pass
