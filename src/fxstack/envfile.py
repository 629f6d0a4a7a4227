"""compose/.env: the stack's secrets and settings, generated on first `up`, never overwritten."""

from __future__ import annotations

import base64
import io
import os
import secrets
import string
from pathlib import Path

# Keys `up` makes sure exist. Values are generated only when the key is absent: an existing
# compose/.env keeps every value it has (the user may have set them by hand).
SECRET_KEYS = (
    "POSTGRES_PASSWORD",
    "AIRFLOW_DB_PASSWORD",
    "MLFLOW_DB_PASSWORD",
    "AIRFLOW_ADMIN_PASSWORD",
    "AIRFLOW_SECRET_KEY",
    "GRAFANA_ADMIN_PASSWORD",
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
