"""Waiting until something is so, one way for every service: tenacity underneath.

tenacity is in poetry.lock and in every image that polls (apache-airflow and feast depend on
it: the Airflow images and fx-fastapi); fx-fingpt has no tenacity and does not import this.
"""
from __future__ import annotations

import time
from typing import Callable, Optional, TypeVar

from tenacity import RetryError, Retrying, retry_if_result, stop_after_delay, stop_never, wait_fixed

T = TypeVar("T")


def poll(check: Callable[[], T], *, until: Callable[[T], bool] = bool, interval: float,
         timeout: Optional[float] = None, what: str = "the condition",
         sleep: Callable[[float], None] = time.sleep) -> T:
    """Call `check()` now and then every `interval` seconds until `until(result)`; return that
    result. An exception from `check` ends the wait (a failure is not a reason to keep
    polling). After `timeout` seconds (None: never) raise TimeoutError naming `what` and the
    last result. `sleep` is the wait between calls (tests pass one that they control)."""
    retrying = Retrying(
        retry=retry_if_result(lambda result: not until(result)),
        wait=wait_fixed(interval),
        stop=stop_never if timeout is None else stop_after_delay(timeout),
        sleep=sleep,
        reraise=True,
    )
    try:
        return retrying(check)
    except RetryError as exc:
        last = exc.last_attempt.result()
        raise TimeoutError(f"{what}: still {last!r} after {timeout:g} s") from None
