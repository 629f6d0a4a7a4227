"""The worker's liveness file: touched while the worker consumes from the broker.

The health check used to run `celery inspect ping` every 15 s: a new Python process importing
Celery and the app and a broker round trip, about 0.3 s of CPU each, and `up` waited up to 15 s
after the worker could take tasks before the first check said so. A file whose age the check
reads costs a `stat` and can be asked every 2 s.

The touches run on the consumer's event loop, which does not run while the consumer reconnects
to the broker (it stops its steps then, and starts them again once Redis is back): a worker cut
off from Redis, or whose loop is stuck, stops touching and turns unhealthy once the file is
older than the check allows (compose/bsopt.yml; tests/bsopt/test_worker_alive.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from celery import bootsteps

ALIVE = Path(os.environ.get("BSOPT_WORKER_ALIVE_FILE", "/tmp/bsopt-worker.alive"))
# the check in compose/bsopt.yml allows 30 s: several touches may be late before it fails
TOUCH_EVERY_S = 5.0


def touch(path: Path = ALIVE) -> None:
    path.touch()


class Alive(bootsteps.StartStopStep):
    """Touch ALIVE now and every TOUCH_EVERY_S seconds while the consumer runs."""

    # after the task consumer: it is started only once the broker connection is up
    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, c: Any, **kwargs: Any) -> None:
        super().__init__(c, **kwargs)
        self._timer_entry: Any = None

    def start(self, c: Any) -> None:
        touch()
        self._timer_entry = c.timer.call_repeatedly(TOUCH_EVERY_S, touch)

    def stop(self, c: Any) -> None:
        if self._timer_entry is not None:
            self._timer_entry.cancel()
            self._timer_entry = None

    shutdown = stop
