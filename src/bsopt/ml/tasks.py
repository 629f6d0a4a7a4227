"""Training as a worker task: registered on the one Celery app (bsopt.tasks.celery_app)."""

from __future__ import annotations

from ..common.errors import InputError, Problem
from ..tasks.base import BsoptTask, db
from ..tasks.celery_app import app, settings
from .model import ModelStore, train


@app.task(name="bsopt.ml.train_neural_pricer", base=BsoptTask)
def train_neural_pricer(samples: int = 3000, hidden: list[int] | None = None, seed: int = 0) -> dict:
    hidden = list(hidden or [48])
    if not isinstance(samples, int) or not 500 <= samples <= 200_000:
        raise InputError(Problem("samples", "out of range", "an integer in [500, 200000]", samples))
    if not (1 <= len(hidden) <= 4 and all(isinstance(h, int) and 2 <= h <= 256 for h in hidden)):
        raise InputError(Problem("hidden", "not a valid layer list", "1 to 4 integers in [2, 256]", hidden))
    net, metrics = train(samples, tuple(hidden), int(seed))
    version = ModelStore(settings.model_dir).publish(net, metrics)
    try:
        db().audit("neural_pricer_trained", {"version": version, **metrics})
    except Exception:  # the model is published; a missing audit row must not fail the job
        pass
    return {"version": version, **metrics}
