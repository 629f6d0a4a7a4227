"""The Celery worker: one app (`bsopt.tasks.celery_app`) for pricing, IV, training and audit tasks."""
