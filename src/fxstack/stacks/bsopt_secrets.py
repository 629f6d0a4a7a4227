"""bsopt's secrets: the keys `up` generates in compose/bsopt.env and the secret files derived from
them for Compose's `secrets:` (same convention as fxstack.envfile.SECRET_FILES: file name ->
content from the env file's values, no trailing newline). compose/bsopt.yml mounts each file
under /run/secrets/<name> in the services that read it; every name starts with `bsopt_`, so the
two stacks' files can share one secrets directory.

Redis: the default user is off and every client logs in as its own ACL user with the commands it
sends and nothing else (seen in Redis' ACL LOG while the stack's tests ran):
- api: publishes Celery jobs and reads their results, lists dead letters, queues scrape requests;
- worker: consumes the Celery queues, stores results, answers the health check's ping (pidbox);
- scraper: reads scrape requests (a stream's consumer group), stores their status, publishes the
  implied-volatility job;
- probe: the health check's PING.
"""

from __future__ import annotations

from typing import Callable

from ..envfile import redis_acl

SECRET_KEYS: tuple[str, ...] = (
    "BSOPT_POSTGRES_PASSWORD",      # the `postgres` superuser
    "BSOPT_DB_PASSWORD",            # the `bsopt` role the services log in as (FX_PG_ROLES=bsopt)
    "BSOPT_REDIS_API_PASSWORD",
    "BSOPT_REDIS_WORKER_PASSWORD",
    "BSOPT_REDIS_SCRAPER_PASSWORD",
    "BSOPT_REDIS_PROBE_PASSWORD",
)

# Every client: HELLO and PING on connecting, SELECT of the results database (AUTH is always
# allowed); kombu's and redis-py's pipelines are MULTI/EXEC transactions.
_CLIENT = "+hello +ping +select +multi +exec +discard"
# A Celery producer: the job onto its queue (LPUSH, after kombu's declare: SADD of the binding,
# LLEN), and the result's channel (Celery subscribes when it sends a job).
_PRODUCER = f"{_CLIENT} +sadd +llen +lpush +subscribe +unsubscribe"

REDIS_USERS: dict[str, tuple[str, str]] = {
    # user: (password key, ACL rules)
    # jobs' states (GET of the result), dead letters (LRANGE), scrape requests (SET, XADD, GET)
    "api": ("BSOPT_REDIS_API_PASSWORD", f"~* &* -@all {_PRODUCER} +get +set +xadd +lrange"),
    # BRPOP of the queues; unacknowledged jobs (a hash and a sorted set, restored under a lock whose
    # release is a Lua script); results (SETEX, PUBLISH); retries and dead letters (LPUSH); the
    # health check's ping (a fanout PUBLISH, a reply queue it deletes again)
    "worker": ("BSOPT_REDIS_WORKER_PASSWORD",
               f"~* &* -@all {_PRODUCER} +brpop +rpush +get +set +setex +del +smembers +srem "
               "+hset +hget +hdel +zadd +zrem +zrevrangebyscore +watch +unwatch +publish +psubscribe "
               "+punsubscribe +evalsha +eval +script|load"),
    # scrape requests (the group created once, XAUTOCLAIM of orphaned ones, XREADGROUP, XACK),
    # SET of their status, the implied-volatility job
    "scraper": ("BSOPT_REDIS_SCRAPER_PASSWORD",
                f"~* &* -@all {_PRODUCER} +xgroup|create +xautoclaim +xreadgroup +xack +set"),
    "probe": ("BSOPT_REDIS_PROBE_PASSWORD", "-@all +ping"),
}


def database_url(values: dict[str, str]) -> str:
    return f"postgresql://bsopt:{values['BSOPT_DB_PASSWORD']}@postgres:5432/bsopt"


SECRET_FILES: dict[str, Callable[[dict[str, str]], str]] = {
    # the Postgres entrypoint reads POSTGRES_PASSWORD_FILE, db-init logs in with it
    "bsopt_postgres_password": lambda v: v["BSOPT_POSTGRES_PASSWORD"],
    # the `bsopt` role's password: the Postgres entrypoint (BSOPT_DB_PASSWORD_FILE) and db-init
    # (psql reads it, no command line) run as the same user
    "bsopt_db_password": lambda v: v["BSOPT_DB_PASSWORD"],
    # BSOPT_DATABASE_URL_FILE of the api, the worker and the scraper (bsopt.common.settings)
    "bsopt_database_url": database_url,
    "bsopt_redis_users_acl": lambda v: redis_acl(v, REDIS_USERS),
    "bsopt_redis_probe_password": lambda v: v["BSOPT_REDIS_PROBE_PASSWORD"],
    # BSOPT_REDIS_PASSWORD_FILE, one per client (each service is its own Redis user)
    "bsopt_redis_api_password": lambda v: v["BSOPT_REDIS_API_PASSWORD"],
    "bsopt_redis_worker_password": lambda v: v["BSOPT_REDIS_WORKER_PASSWORD"],
    "bsopt_redis_scraper_password": lambda v: v["BSOPT_REDIS_SCRAPER_PASSWORD"],
}
