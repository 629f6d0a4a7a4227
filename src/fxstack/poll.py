"""One way to wait for something: call a check until it has an answer or the time is up.

Every wait in the harness (a registry starting, a DAG run finishing, a service becoming ready)
is this loop; callers say what they wait for in the check and what to tell the user in the
`TimedOut` handler. A check gives up at once by raising (an FxError that says why), so a
failure that will not fix itself is reported without waiting for the deadline.
"""

from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")


class TimedOut(Exception):
    """The deadline passed while the check still had no answer."""

    def __init__(self, waited: float, attempts: int):
        super().__init__(f"no answer after {waited:.1f} s ({attempts} attempts)")
        self.waited = waited
        self.attempts = attempts


def poll(check: Callable[[], Optional[T]], *, timeout: float, interval: float,
         clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `check()` until it returns something other than None, and return that.

    The check runs at least once, then every `interval` seconds; the last wait is cut so that
    the check also runs at the deadline itself. Past `timeout` seconds: TimedOut. An exception
    from the check ends the wait and propagates. `clock` and `sleep` are for tests."""
    start = clock()
    deadline = start + timeout
    attempts = 0
    while True:
        attempts += 1
        result = check()
        if result is not None:
            return result
        now = clock()
        if now >= deadline:
            raise TimedOut(now - start, attempts)
        sleep(min(interval, deadline - now))
