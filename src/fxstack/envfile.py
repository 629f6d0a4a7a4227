"""A stack's env file (compose/.env, compose/bsopt.env): its secrets and settings, generated on
first `up`, never overwritten; and the secret files derived from it."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import secrets
import string
from pathlib import Path
from typing import Callable, Mapping

from .errors import FxError

PASSWORD_ALPHABET = string.ascii_letters + string.digits


def new_password() -> str:
    """32 letters and digits (190 bits). Not token_urlsafe: one in 32 of those starts with '-',
    which a command line such as `airflow users create --password X` reads as an option. Letters
    and digits are also safe inside postgresql:// and redis:// URLs without quoting."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(32))


def new_fernet_key() -> str:
    """A Fernet key as Airflow wants it: 32 random bytes, URL-safe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


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


def ensure_env_file(path: Path, wanted: dict[str, str], header: str,
                    plain: frozenset[str] | set[str] = frozenset()) -> tuple[bool, list[str]]:
    """Create `path` (mode 600) with `header` and the `wanted` values if it is absent; else
    append only the keys it lacks (a stack's generated secrets: StackDef.generate()).

    Never changes a value that is there (an empty value counts as missing for every key but the
    `plain` ones, since an empty password cannot work). Returns (created, keys added).
    """
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        body = header + "".join(f"{k}={v}\n" for k, v in wanted.items())
        # O_EXCL: if something created the file meanwhile, we do not clobber it.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
        return True, list(wanted)
    existing = read_env(path)
    # An empty secret line stays as it is (lines are never rewritten); the appended line wins
    # because Compose takes the last definition of a key.
    add = [k for k in wanted if k not in existing or (not existing[k] and k not in plain)]
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
def redis_acl(values: dict[str, str], users: dict[str, tuple[str, str]]) -> str:
    """A Redis ACL file: the default user off (no client gets in without a password), one user per
    client ({user: (password key, rules)}: each stack's own table), each password stored as its
    SHA-256 (Redis' `#<hex>` form), never in clear."""
    lines = ["user default off resetkeys -@all"]
    for user, (key, rules) in users.items():
        digest = hashlib.sha256(values[key].encode()).hexdigest()
        lines.append(f"user {user} on #{digest} {rules}")
    return "\n".join(lines) + "\n"


SecretTable = Mapping[str, Callable[[dict[str, str]], str]]

# What an optional secret's file holds when the user set no value: Swarm refuses a secret of
# zero bytes, and every reader strips whitespace, so a newline reads as "not set".
UNSET = "\n"


def optional(read: Callable[[dict[str, str]], str]) -> Callable[[dict[str, str]], str]:
    """A secret the user may leave unset (their own API token, say): its file is then UNSET."""
    def read_or_unset(values: dict[str, str]) -> str:
        return read(values) or UNSET
    return read_or_unset


def secret_files(table: SecretTable, values: dict[str, str], names: list[str] | None = None
                 ) -> dict[str, bytes]:
    """{file name: content} for the named files of a stack's secret table (default: all), from
    the values of its env file."""
    files: dict[str, bytes] = {}
    for name in table if names is None else names:
        try:
            content = table[name](values)
        except KeyError as exc:
            content = ""
            missing = exc.args[0]
        else:
            missing = None if content else name
        if missing or not content:
            raise FxError(f"no value for {missing or name} (secret file {name})",
                          hint="`fxstack up` writes missing secrets to the stack's env file; or set them there by hand")
        files[name] = content.encode()
    return files
