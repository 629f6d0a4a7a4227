"""Settings from the environment (compose/bsopt.yml sets them); defaults suit a host run."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    result_url: str
    model_dir: Path
    board_url: str
    scrape_targets: tuple[str, ...]
    scrape_interval: float
    risk_free_rate: float

    @classmethod
    def from_env(cls) -> "Settings":
        env = os.environ
        redis = env.get("BSOPT_REDIS_URL", "redis://127.0.0.1:6379/0")
        board = env.get("BSOPT_BOARD_URL", "http://127.0.0.1:8100/board")
        targets = tuple(t.strip() for t in env.get("BSOPT_SCRAPE_TARGETS", board).split(",") if t.strip())
        return cls(
            database_url=env.get("BSOPT_DATABASE_URL", "postgresql://bsopt@127.0.0.1:5432/bsopt"),
            redis_url=redis,
            # results in another Redis database than the broker's queues
            result_url=env.get("BSOPT_RESULT_URL", redis.rsplit("/", 1)[0] + "/1"),
            model_dir=Path(env.get("BSOPT_MODEL_DIR", "/data/models")),
            board_url=board,
            scrape_targets=targets,
            scrape_interval=float(env.get("BSOPT_SCRAPE_INTERVAL", "60")),
            risk_free_rate=float(env.get("BSOPT_RISK_FREE_RATE", "0.03")),
        )


# Redis keys the services share (the API writes requests the scraper reads, ...).
SCRAPE_QUEUE = "bsopt:scrape-requests"
SCRAPE_STATUS = "bsopt:scrape:{}"
DEAD_LETTER_KEY = "bsopt:dead-letter"
