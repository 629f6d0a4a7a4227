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
    global _proc, _started, _log
    if _proc is not None:
        return
    log_dir.mkdir(parents=True, exist_ok=True)
    _log = log_dir / "test-prebuild.log"
    _started = time.monotonic()
    with open(_log, "w") as out:
        # Below the tests' priority: a unit test's timing must not suffer from the build.
        _proc = subprocess.Popen(["nice", "-n", "10", sys.executable, "-c", _SCRIPT], stdout=out,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)


def wait() -> None:
    """Block until the build has finished (at once when none was started or it already has)."""
    global _proc
    if _proc is None:
        return
    rc = _proc.wait()
    _proc = None
    took = time.monotonic() - _started
    if rc == 0:
        print(f"\nimages built beside the unit tier in {took:.0f} s", file=sys.stderr)
    else:
        print(f"\nthe build beside the unit tier failed after {took:.0f} s (rc {rc}, {_log}); the fixtures "
              "build again and report the error", file=sys.stderr)


def stop() -> None:
    """An interrupted run ends its build too (every cache write is atomic: nothing half-written stays)."""
    global _proc
    if _proc is not None and _proc.poll() is None:
        _proc.terminate()
        try:
            _proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _proc.kill()
            _proc.wait()
    _proc = None
