"""Settings from the environment (compose/bsopt.yml sets them); defaults suit a host run.

Credentials come from files, never from the environment: BSOPT_DATABASE_URL_FILE names a file
holding the database URL (with its password), BSOPT_REDIS_PASSWORD_FILE the password of the Redis
ACL user BSOPT_REDIS_USERNAME (Compose mounts both from `secrets:` under /run/secrets). A plain
BSOPT_DATABASE_URL still works for a host run without secrets; a file wins when both are set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping
from urllib.parse import quote, urlsplit, urlunsplit


class SettingsError(RuntimeError):
    """A setting that names a file the service cannot read: the variable, the path, the fix."""


def _from_file(env: Mapping[str, str], name: str) -> str | None:
    """The content of the file NAME_FILE names (one trailing newline dropped), or None if unset."""
    path = env.get(f"{name}_FILE")
    if not path:
        return None
    try:
        return Path(path).read_text(encoding="utf-8").removesuffix("\n")
    except OSError as exc:
        raise SettingsError(f"{name}_FILE={path}: {exc.strerror} (uid {os.getuid()}); the file is a Compose "
                            "secret that `fxstack up bsopt` writes: run it, or unset the variable") from None


def with_credentials(url: str, username: str | None, password: str | None) -> str:
    """`url` with user:password in its authority (both quoted); unchanged without a password."""
    if not password:
        return url
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    auth = f"{quote(username or '', safe='')}:{quote(password, safe='')}"
    return urlunsplit(parts._replace(netloc=f"{auth}@{host}"))


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str
    result_url: str
    model_dir: Path
    board_url: str
    scrape_targets: tuple[str, ...]
    scrape_interval: float
    # a request another scraper took and did not finish within this many seconds is run again
    scrape_claim_after: float
    risk_free_rate: float

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "Settings":
        env = os.environ if env is None else env
        redis = env.get("BSOPT_REDIS_URL", "redis://127.0.0.1:6379/0")
        # results in another Redis database than the broker's queues
        result = env.get("BSOPT_RESULT_URL", redis.rsplit("/", 1)[0] + "/1")
        user, password = env.get("BSOPT_REDIS_USERNAME"), _from_file(env, "BSOPT_REDIS_PASSWORD")
        board = env.get("BSOPT_BOARD_URL", "http://127.0.0.1:8100/board")
        targets = tuple(t.strip() for t in env.get("BSOPT_SCRAPE_TARGETS", board).split(",") if t.strip())
        return cls(
            database_url=(_from_file(env, "BSOPT_DATABASE_URL")
                          or env.get("BSOPT_DATABASE_URL", "postgresql://bsopt@127.0.0.1:5432/bsopt")),
            redis_url=with_credentials(redis, user, password),
            result_url=with_credentials(result, user, password),
            model_dir=Path(env.get("BSOPT_MODEL_DIR", "/data/models")),
            board_url=board,
            scrape_targets=targets,
            scrape_interval=float(env.get("BSOPT_SCRAPE_INTERVAL", "60")),
            scrape_claim_after=float(env.get("BSOPT_SCRAPE_CLAIM_AFTER", "60")),
            risk_free_rate=float(env.get("BSOPT_RISK_FREE_RATE", "0.03")),
        )


# Redis keys the services share (the API writes requests the scraper reads, ...).
SCRAPE_STATUS = "bsopt:scrape:{}"
DEAD_LETTER_KEY = "bsopt:dead-letter"
