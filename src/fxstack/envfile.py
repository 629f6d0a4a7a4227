"""compose/.env: the stack's secrets and settings, generated on first `up`, never overwritten."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import secrets
import string
from pathlib import Path
from typing import Callable

from .errors import FxError

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
"""


PASSWORD_ALPHABET = string.ascii_letters + string.digits


def new_password() -> str:
    """32 letters and digits (190 bits). Not token_urlsafe: one in 32 of those starts with '-',
    which a command line such as `airflow users create --password X` reads as an option. Letters
    and digits are also safe inside postgresql:// and redis:// URLs without quoting."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(32))


def new_fernet_key() -> str:
    """A Fernet key as Airflow wants it: 32 random bytes, URL-safe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def generated_values() -> dict[str, str]:
    values = {key: new_password() for key in SECRET_KEYS}
    values["AIRFLOW_FERNET_KEY"] = new_fernet_key()
    values.update(PLAIN_DEFAULTS)
    return values


def parse_env(text: str) -> dict[str, str]:
    """KEY=VALUE lines as Compose reads them, by python-dotenv: comments, blank lines, quotes,
    `export`, ${VAR}; a ` #` ends an unquoted value (`FX_API_PORT=18000 # mine` is 18000, as
    Compose reads it; a hand-written parser kept the comment and the port check refused the
    file). A key without `=` has no value here (Compose would take it from the shell)."""
    # imported here, not at the top: `fxstack.stack.compose` (which reads env files) must import
    # in a bare interpreter too, to tell a user without the environment how to get Compose
    from dotenv import dotenv_values

    values = dotenv_values(stream=io.StringIO(text))
    return {key: value for key, value in values.items() if value is not None}


def read_env(path: Path) -> dict[str, str]:
    return parse_env(path.read_text(encoding="utf-8")) if path.is_file() else {}


def ensure_env_file(path: Path) -> tuple[bool, list[str]]:
    """Create `path` with fresh secrets if it is absent; else append only the keys it lacks.

    Never changes a value that is there (an empty value counts as missing only for the
    generated secrets, since an empty password cannot work). Returns (created, keys added).
    """
    wanted = generated_values()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        body = HEADER + "".join(f"{k}={v}\n" for k, v in wanted.items())
        # O_EXCL: if something created the file meanwhile, we do not clobber it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
        return True, list(wanted)
    existing = read_env(path)
    missing = [k for k in wanted if k not in existing]
    empty_secrets = [k for k in wanted if k in existing and not existing[k] and k not in PLAIN_DEFAULTS]
    add = missing + [k for k in empty_secrets if k not in missing]
    if empty_secrets:
        # An empty secret line stays as it is (we never rewrite lines); the appended line wins
        # because Compose takes the last definition of a key.
        pass
    if add:
        text = path.read_text(encoding="utf-8")
        with open(path, "a", encoding="utf-8") as fh:
            if text and not text.endswith("\n"):
                fh.write("\n")
            fh.write("# added by fxstack up\n")
            for key in add:
                fh.write(f"{key}={wanted[key]}\n")
    return False, add


# ---------------------------------------------------------------- secrets as files
# What the containers read: one file per secret and consumer under the secrets directory,
# mounted by Compose's `secrets:` at /run/secrets/<name> (docker-compose.yml names them), so no
# password is in any container's environment (`docker inspect`) or command line. compose/.env
# stays the one place a user sets a value; the files are derived from it on every `up`.
# A file holds the bare value, with no trailing newline: Airflow's `*_CMD` options use a
# command's output as it is, and a newline would end up in the database name.
REDIS_ACL_USERS = {
    # user: (password key, ACL rules). Every user reaches every key (~*): Feast and Celery
    # share the instance (db 0 and db 1); what differs is the commands.
    "airflow": ("REDIS_AIRFLOW_PASSWORD", "~* &* +@all"),
    "api": ("REDIS_API_PASSWORD", "~* -@all +@read +@connection"),
    "exporter": ("REDIS_EXPORTER_PASSWORD",
                 "~* -@all +@read +@connection +info +config|get +latency +slowlog +memory +client|list"),
    "probe": ("REDIS_PROBE_PASSWORD", "-@all +ping"),
}


def redis_acl(values: dict[str, str], users: dict[str, tuple[str, str]] | None = None) -> str:
    """A Redis ACL file: the default user off (no client gets in without a password), one user per
    client ({user: (password key, rules)}, the FX stack's by default), each password stored as its
    SHA-256 (Redis' `#<hex>` form), never in clear."""
    lines = ["user default off resetkeys -@all"]
    for user, (key, rules) in (REDIS_ACL_USERS if users is None else users).items():
        digest = hashlib.sha256(values[key].encode()).hexdigest()
        lines.append(f"user {user} on #{digest} {rules}")
    return "\n".join(lines) + "\n"


SECRET_FILES: dict[str, Callable[[dict[str, str]], str]] = {
    # Postgres' entrypoint reads *_FILE (images/files/postgres/fx-postgres-entrypoint)
    "postgres_password": lambda v: v["POSTGRES_PASSWORD"],
    "postgres_airflow_db_password": lambda v: v["AIRFLOW_DB_PASSWORD"],
    "postgres_mlflow_db_password": lambda v: v["MLFLOW_DB_PASSWORD"],
    # Redis reads its users from an ACL file; the health check's PING logs in as `probe`
    "redis_users_acl": redis_acl,
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
    # Grafana reads GF_<SECTION>_<KEY>__FILE
    "grafana_admin_password": lambda v: v["GRAFANA_ADMIN_PASSWORD"],
}


def secret_files(values: dict[str, str], names: list[str] | None = None) -> dict[str, bytes]:
    """{file name: content} for the named secret files (default: all), from compose/.env's values."""
    files: dict[str, bytes] = {}
    for name in SECRET_FILES if names is None else names:
        try:
            content = SECRET_FILES[name](values)
        except KeyError as exc:
            content = ""
            missing = exc.args[0]
        else:
            missing = None if content else name
        if missing or not content:
            raise FxError(f"no value for {missing or name} (secret file {name})",
                          hint="`fxstack up` writes missing secrets to compose/.env; or set them there by hand")
        files[name] = content.encode()
    return files
