"""bsopt's secrets: the keys `up` generates in compose/bsopt.env and the secret files derived from
them for Compose's `secrets:` (same convention as fxstack.envfile.SECRET_FILES: file name ->
content from the env file's values, no trailing newline)."""

from __future__ import annotations

from typing import Callable

SECRET_KEYS: tuple[str, ...] = ("BSOPT_POSTGRES_PASSWORD", "BSOPT_DB_PASSWORD", "BSOPT_UNUSED_DB_PASSWORD")

SECRET_FILES: dict[str, Callable[[dict[str, str]], str]] = {}
