"""What the security tier expects of each registered stack: the parts that differ between stacks
(which services run, which publish, who may send Redis which command, which Postgres roles log
in). The checks themselves are written once (test_stack_security.py) and walk every stack in
EXPECTED; a stack that is registered but not here fails `test_every_stack_is_checked`."""

from __future__ import annotations

from dataclasses import dataclass, field

# Redis commands no client of ours sends: administration, server state, every key at once. Each
# is harmless where it is allowed by mistake (the test fails then), FLUSHALL last.
# (DEBUG and MODULE are refused by the server's own settings before any ACL, so they prove nothing.)
ADMIN = [("CONFIG", "SET", "slowlog-max-len", "128"), ("ACL", "LIST"), ("ACL", "SETUSER", "fxsec-nobody"),
         ("CLIENT", "KILL", "ID", "1"), ("CLIENT", "PAUSE", "1"), ("REPLICAOF", "NO", "ONE"), ("SCRIPT", "FLUSH"),
         ("KEYS", "*"),
         ("SHUTDOWN", "ABORT"), ("FLUSHALL",)]


@dataclass(frozen=True)
class RedisUser:
    password_key: str                       # the env file's key of its password
    may: list[tuple[str, ...]]
    may_not: list[tuple[str, ...]]


@dataclass(frozen=True)
class Expected:
    long_running: frozenset[str]            # services with a process that stays up
    published: frozenset[str]               # services with a port on the host (127.0.0.1 only)
    client: str                             # a service with python3, redis-py and psycopg2
    redis_users: dict[str, RedisUser]
    probe_password_key: str                 # the health check's Redis user `probe`
    postgres_login: tuple[str, str, str]    # (role, database, env key of its password)
    postgres_roles: str                     # every role that may log in, sorted, comma-separated
    # secret files no long-running service mounts: a one-shot container's (exited when the checks
    # run) or one of a variant that is not up
    unmounted_secrets: frozenset[str] = frozenset()
    # services whose processes may hold capabilities over a user namespace of their own
    # (Chromium's sandbox), with the text their seccomp profile carries
    sandboxed: dict[str, str] = field(default_factory=dict)


EXPECTED: dict[str, Expected] = {
    "fx": Expected(
        long_running=frozenset({"postgres", "redis", "airflow-scheduler", "airflow-webserver", "airflow-worker",
                                "mlflow", "fastapi", "prometheus", "statsd-exporter", "redis-exporter"}),
        published=frozenset({"airflow-webserver", "mlflow", "fastapi", "prometheus"}),
        client="airflow-worker",
        redis_users={
            # Celery's broker (db 1) and Feast's writes (db 0)
            "airflow": RedisUser("REDIS_AIRFLOW_PASSWORD",
                                 [("PING",), ("SET", "fxsec:k", "v"), ("HSET", "fxsec:h", "f", "1"), ("GET", "x"),
                                  ("LPUSH", "fxsec:l", "1"), ("DEL", "fxsec:k", "fxsec:h", "fxsec:l")],
                                 ADMIN),
            # Feast's reads
            "api": RedisUser("REDIS_API_PASSWORD", [("PING",), ("GET", "x"), ("HGETALL", "x")],
                             [("SET", "x", "1"), ("DEL", "x"), ("HSET", "x", "f", "1"), ("INFO",),
                              ("CONFIG", "GET", "*")] + ADMIN),
            "exporter": RedisUser("REDIS_EXPORTER_PASSWORD",
                                  [("PING",), ("INFO",), ("CONFIG", "GET", "maxmemory"), ("SLOWLOG", "GET", "1")],
                                  [("SET", "x", "1"), ("DEL", "x")] + ADMIN),
        },
        probe_password_key="REDIS_PROBE_PASSWORD",
        postgres_login=("airflow", "airflow", "AIRFLOW_DB_PASSWORD"),
        postgres_roles="airflow,mlflow,postgres",
        # airflow-init's (it creates the admin user), grafana's (the `--grafana` variant, not up here)
        unmounted_secrets=frozenset({"airflow_admin_password", "grafana_admin_password"}),
    ),
    "bsopt": Expected(
        long_running=frozenset({"postgres", "redis", "quote-board", "api", "neural-pricing", "worker", "scraper"}),
        published=frozenset({"api", "neural-pricing"}),
        client="api",
        redis_users={
            "api": RedisUser("BSOPT_REDIS_API_PASSWORD", [("PING",), ("LRANGE", "bsopt:dead-letter", "0", "0"),
                                                          ("GET", "x")],
                             [("DEL", "bsopt:dead-letter"), ("BRPOP", "celery", "1"), ("CONFIG", "GET", "*")] + ADMIN),
            "worker": RedisUser("BSOPT_REDIS_WORKER_PASSWORD", [("PING",), ("LLEN", "celery"), ("GET", "x")],
                                [("LRANGE", "celery", "0", "0"), ("CONFIG", "GET", "*")] + ADMIN),
            "scraper": RedisUser("BSOPT_REDIS_SCRAPER_PASSWORD", [("PING",), ("SET", "bsopt:scrape:sec-probe", "1")],
                                 [("LRANGE", "bsopt:dead-letter", "0", "0"), ("DEL", "bsopt:dead-letter"),
                                  ("GET", "x"), ("CONFIG", "GET", "*")] + ADMIN),
        },
        probe_password_key="BSOPT_REDIS_PROBE_PASSWORD",
        postgres_login=("bsopt", "bsopt", "BSOPT_DB_PASSWORD"),
        postgres_roles="bsopt,postgres",   # FX_PG_ROLES=bsopt: no other role
        unmounted_secrets=frozenset({"bsopt_db_password"}),    # db-init's
        sandboxed={"scraper": "bsopt: Chromium"},
    ),
}
