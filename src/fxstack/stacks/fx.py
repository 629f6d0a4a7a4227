"""The FX pipeline stack: compose/docker-compose.yml (project fxstack), its GPU and Grafana
variants, compose/.env and the secret files derived from it."""

from __future__ import annotations

import json

from ..envfile import new_fernet_key, optional, redis_acl
from . import fx_e2e, fx_ready
from .model import NO_LOGIN, DataVolume, StackDef, Url, Variant, frozen_map

# Keys `up` makes sure exist. Values are generated only when the key is absent: an existing
# compose/.env keeps every value it has (the user may have set them by hand).
SECRET_KEYS = (
    "POSTGRES_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW_SECRET_KEY",
    "GRAFANA_ADMIN_PASSWORD",
    # Redis ACL users, one per client (default user off): Airflow (Celery broker + Feast writes),
    # the inference API (Feast reads), the exporter, and the health check's PING.
    "REDIS_AIRFLOW_PASSWORD",
    "REDIS_API_PASSWORD",
    "REDIS_EXPORTER_PASSWORD",
    "REDIS_PROBE_PASSWORD",
)
PLAIN_DEFAULTS = {
    "AIRFLOW_ADMIN_USER": "admin",
    "GRAFANA_ADMIN_USER": "admin",
}
HEADER = """\
# compose/.env: written by `fxstack up` on first run with random secrets; it is never overwritten
# (keys that are missing are appended). Keep it out of version control (.gitignore has it).
# Airflow UI/API login: AIRFLOW_ADMIN_USER / AIRFLOW_ADMIN_PASSWORD. Grafana: GRAFANA_ADMIN_*.
# Ports, FX_PAIRS, OANDA_API_TOKEN etc. may be added here; see compose/.env.example.
# The data volumes are bound to AIRFLOW_FERNET_KEY: keep this file (a copy restores them).
"""

REDIS_ACL_USERS = {
    # user: (password key, ACL rules). Every user reaches every key (~*): Feast and Celery
    # share the instance (db 0 and db 1); what differs is the commands. No client may run what
    # administers the server or blocks it (@dangerous: FLUSHALL, CONFIG SET, ACL, SHUTDOWN, KEYS,
    # DEBUG, MODULE, REPLICAOF ...), nor flush or kill the server's scripts and functions:
    # Celery and Feast send none of it.
    "airflow": ("REDIS_AIRFLOW_PASSWORD", "~* &* +@all -@dangerous -script|flush -script|kill -function"),
    # (@connection alone would give CLIENT KILL and CLIENT PAUSE: -@dangerous takes them back.)
    "api": ("REDIS_API_PASSWORD", "~* -@all +@read +@connection -@dangerous"),
    "exporter": ("REDIS_EXPORTER_PASSWORD",
                 "~* -@all +@read +@connection -@dangerous +info +config|get +latency +slowlog +memory +client|list"),
    "probe": ("REDIS_PROBE_PASSWORD", "-@all +ping"),
}

# What the containers read: one file per secret and consumer, mounted by Compose's `secrets:` at
# /run/secrets/<name>, so no password is in a container's environment or command line. A file
# holds the bare value, with no trailing newline: Airflow's `*_CMD` options use a command's output
# as it is, and a newline would end up in the database name.
SECRET_FILES = {
    # Postgres' entrypoint reads *_FILE (images/files/postgres/fx-postgres-entrypoint)
    "postgres_password": lambda v: v["POSTGRES_PASSWORD"],
    "postgres_airflow_db_password": lambda v: v["AIRFLOW_DB_PASSWORD"],
    "postgres_mlflow_db_password": lambda v: v["MLFLOW_DB_PASSWORD"],
    # Redis reads its users from an ACL file; the health check's PING logs in as `probe`
    "redis_users_acl": lambda v: redis_acl(v, REDIS_ACL_USERS),
    "redis_probe_password": lambda v: v["REDIS_PROBE_PASSWORD"],
    # Airflow: AIRFLOW__<SECTION>__<KEY>_CMD = cat /run/secrets/<file>
    "airflow_sql_alchemy_conn":
        lambda v: f"postgresql+psycopg2://airflow:{v['AIRFLOW_DB_PASSWORD']}@postgres:5432/airflow",
    "airflow_result_backend":
        lambda v: f"db+postgresql://airflow:{v['AIRFLOW_DB_PASSWORD']}@postgres:5432/airflow",
    "airflow_broker_url": lambda v: f"redis://airflow:{v['REDIS_AIRFLOW_PASSWORD']}@redis:6379/1",
    "airflow_fernet_key": lambda v: v["AIRFLOW_FERNET_KEY"],
    "airflow_secret_key": lambda v: v["AIRFLOW_SECRET_KEY"],
    "airflow_admin_password": lambda v: v["AIRFLOW_ADMIN_PASSWORD"],
    # Feast's Redis online store in the worker (REDIS_PASSWORD_FILE, fxservices.common.config)
    "airflow_redis_password": lambda v: v["REDIS_AIRFLOW_PASSWORD"],
    # MLflow: MLFLOW_BACKEND_STORE_URI_FILE (fxservices.mlflow_server)
    "mlflow_backend_store_uri":
        lambda v: f"postgresql://mlflow:{v['MLFLOW_DB_PASSWORD']}@postgres:5432/mlflow",
    # the inference API's Feast reads
    "api_redis_password": lambda v: v["REDIS_API_PASSWORD"],
    # redis-exporter 1.45: REDIS_PASSWORD_FILE is a JSON map {REDIS_ADDR as written: password}
    "exporter_redis_password": lambda v: json.dumps({"redis://redis:6379": v["REDIS_EXPORTER_PASSWORD"]}),
    # the user's own OANDA token (compose/.env or the shell), optional: without one the pipeline
    # trains on a generated price series (fxservices.pipeline.tasks reads OANDA_API_TOKEN_FILE)
    "oanda_api_token": optional(lambda v: v.get("OANDA_API_TOKEN", "").strip()),
    # Grafana reads GF_<SECTION>_<KEY>__FILE
    "grafana_admin_password": lambda v: v["GRAFANA_ADMIN_PASSWORD"],
}

FX = StackDef(
    name="fx",
    title="the FX pipeline",
    project="fxstack",
    compose_files=("docker-compose.yml",),
    env_file=".env",
    env_header=HEADER,
    secret_keys=SECRET_KEYS,
    secret_files=frozen_map(SECRET_FILES),
    generated=frozen_map({"AIRFLOW_FERNET_KEY": new_fernet_key}),
    plain_defaults=frozen_map(PLAIN_DEFAULTS),
    variants=frozen_map({
        "gpu": Variant("add the FinGPT service (compose/docker-compose.gpu.yml)",
                       files=("docker-compose.gpu.yml",)),
        # Grafana has no Debian package, so no portable build: its image comes from the Nix path
        "grafana": Variant("start Grafana too (profile monitoring-ui; its image comes from the Nix path)",
                           profiles=("monitoring-ui",), nix_only_images=("GRAFANA_IMAGE",)),
    }),
    urls=frozen_map({
        "airflow-webserver": Url("Airflow UI and REST API", "/",
                                 "user AIRFLOW_ADMIN_USER, password AIRFLOW_ADMIN_PASSWORD in {env_file}"),
        "mlflow": Url("MLflow tracking server + model registry", "/", NO_LOGIN),
        "fastapi": Url("Inference API (OpenAPI docs)", "/docs", NO_LOGIN),
        "prometheus": Url("Prometheus", "/targets", NO_LOGIN),
        "grafana": Url("Grafana dashboards", "/",
                       "user GRAFANA_ADMIN_USER, password GRAFANA_ADMIN_PASSWORD in {env_file}"),
        "fingpt": Url("FinGPT sentiment API", "/docs", NO_LOGIN),
    }),
    probes=frozen_map(fx_ready.PROBES),
    data=(
        # Airflow encrypts connections and variables in its database with the Fernet key: a new
        # key cannot read them, so the key is bound to the data. The roles' passwords are set to
        # the current secrets by the Postgres entrypoint on start, and airflow-init resets the
        # admin user's password: those follow compose/.env.
        DataVolume("pgdata", "Airflow's metadata (run history, encrypted connections) and MLflow's registry",
                   bound=("AIRFLOW_FERNET_KEY",),
                   healed=("POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD",
                           "AIRFLOW_ADMIN_PASSWORD")),
        # Grafana sets its admin password only when it creates its database
        DataVolume("grafana-data", "Grafana's users and dashboards", bound=("GRAFANA_ADMIN_PASSWORD",)),
    ),
    e2e=fx_e2e.run,
    e2e_help="DAG -> MLflow -> /predict -> Prometheus",
    bench="./fx bench-stack (bench/stack_bench.py)",
)
