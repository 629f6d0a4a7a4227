"""fxstack.poll: the one wait loop, driven by a fake clock (no real sleeping)."""

from __future__ import annotations

import pytest

from fxstack.errors import FxError
from fxstack.poll import TimedOut, poll

pytestmark = pytest.mark.unit


class FakeClock:
    def __init__(self):
        self.now = 100.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_the_first_answer_and_sleeps_between_attempts():
    clock = FakeClock()
    answers = iter([None, None, {"state": "success"}])
    got = poll(lambda: next(answers), timeout=60, interval=3, clock=clock, sleep=clock.sleep)
    assert got == {"state": "success"}
    assert clock.sleeps == [3, 3]


def test_falsy_answers_other_than_none_count_as_answers():
    clock = FakeClock()
    assert poll(lambda: 0, timeout=5, interval=1, clock=clock, sleep=clock.sleep) == 0
    assert poll(lambda: [], timeout=5, interval=1, clock=clock, sleep=clock.sleep) == []
    assert clock.sleeps == []


def test_times_out_after_checking_at_the_deadline():
    clock = FakeClock()
    calls = []

    def check():
        calls.append(clock.now)
        return None

    with pytest.raises(TimedOut) as err:
        poll(check, timeout=10, interval=4, clock=clock, sleep=clock.sleep)
    # 100, 104, 108 and, the last wait cut to 2 s, once more at the deadline itself
    assert calls == [100, 104, 108, 110]
    assert err.value.attempts == 4 and err.value.waited == 10


def test_a_check_that_raises_ends_the_wait_at_once():
    clock = FakeClock()

    def check():
        raise FxError("the one-shot exited with code 3")

    with pytest.raises(FxError, match="code 3"):
        poll(check, timeout=600, interval=1, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []
