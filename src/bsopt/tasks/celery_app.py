"""The one Celery app of bsopt: `celery -A bsopt.tasks.celery_app worker`.

The seed's worker image ran `celery -A src.ml.celery_app` while the general app lived in
`src/tasks/celery_app.py`; here there is one app, and it registers the ML tasks too
(`bsopt.ml.tasks`), so a worker serves every queue and the API submits to the same names.

Delivery: Redis broker, results in another Redis database. `acks_late` with
`reject_on_worker_lost`: a task whose worker dies mid-run goes back to the queue instead of being
lost; prefetch 1, so a long training job does not hold quick ones hostage. Failures: transient
ones (the database or Redis away) retry with exponential backoff; a task that still fails, or
whose arguments can never work (a poison message), goes to the dead-letter list
`bsopt:dead-letter` in Redis with its arguments and the error, and is not retried. A message that
is no task at all (not JSON, a body that does not decode, an unknown task name) is dead-lettered
too, and the worker goes on (bsopt.tasks.transport, bsopt.tasks.base).
"""

from __future__ import annotations

from celery import Celery

from ..common.settings import Settings
from .alive import Alive

settings = Settings.from_env()
app = Celery("bsopt", broker=settings.redis_url, backend=settings.result_url,
             include=["bsopt.tasks.pricing_tasks", "bsopt.tasks.audit_tasks", "bsopt.ml.tasks"])
app.conf.update(
    task_serializer="json", result_serializer="json", accept_content=["json"],
    task_acks_late=True, task_reject_on_worker_lost=True, worker_prefetch_multiplier=1,
    result_expires=24 * 3600, task_track_started=True,
    broker_connection_retry_on_startup=True,
    # a message whose visibility timeout passes is redelivered: longer than the longest task
    broker_transport_options={"visibility_timeout": 3600},
    worker_hijack_root_logger=False,
    # kombu's Redis transport, plus a dead letter for items that are no message envelope
    broker_transport="bsopt.tasks.transport:Transport",
)
# the liveness file the health check reads (bsopt.tasks.alive)
app.steps["consumer"].add(Alive)

# What the API may submit: public name -> registered task name.
TASKS = {
    "price_batch": "bsopt.tasks.price_batch",
    "implied_vols": "bsopt.tasks.implied_vols",
    "train_neural_pricer": "bsopt.ml.train_neural_pricer",
    "audit": "bsopt.tasks.audit",
}
