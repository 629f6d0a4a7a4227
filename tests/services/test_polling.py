"""fxservices.common.polling.poll (tenacity underneath) and the registration wait built on it."""
from __future__ import annotations

import time

import pytest

pytestmark = pytest.mark.unit


def test_polls_until_the_condition_holds_sleeping_between_calls():
    from fxservices.common.polling import poll

    answers = iter(["PENDING", "PENDING", "READY", "never asked"])
    slept: list[float] = []
    got = poll(lambda: next(answers), until=lambda s: s == "READY", interval=0.5,
               timeout=60, sleep=slept.append)
    assert got == "READY"
    assert slept == [0.5, 0.5]  # one wait between each two calls, none after the last
    assert next(answers) == "never asked"


def test_timeout_names_what_was_awaited_and_the_last_answer():
    from fxservices.common.polling import poll

    calls = []
    t0 = time.monotonic()
    with pytest.raises(TimeoutError, match=r"the registration: still 'PENDING' after 0.2 s"):
        poll(lambda: calls.append(1) or "PENDING", until=lambda s: s == "READY",
             interval=0.02, timeout=0.2, what="the registration")
    assert 0.2 <= time.monotonic() - t0 < 5 and len(calls) >= 2


def test_an_error_ends_the_wait_at_once():
    from fxservices.common.polling import poll

    calls = []

    def check():
        calls.append(1)
        raise ConnectionError("registry down")

    with pytest.raises(ConnectionError, match="registry down"):
        poll(check, interval=0.01, timeout=10, sleep=lambda s: pytest.fail("slept"))
    assert calls == [1]
