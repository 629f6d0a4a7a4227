"""Reading the service environment (docs/contracts.md) with errors that name the variable."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

DEFAULT_PAIRS = ("EUR_USD", "GBP_USD", "USD_JPY")


class ConfigError(RuntimeError):
    """A required environment variable is missing or malformed. The message names it."""


def env_str(name: str, default: Optional[str] = None, *, required: bool = False,
            hint: str = "") -> str:
    """The variable's value, stripped; `default` when unset or empty.

    With required=True (and no default) an unset/empty variable raises ConfigError naming it.
    """
    raw = os.environ.get(name)
    value = raw.strip() if raw is not None else ""
    if value:
        return value
    if default is not None and not required:
        return default
    msg = f"environment variable {name} is not set or empty"
    if hint:
        msg += f": {hint}"
    raise ConfigError(msg)


def env_secret(name: str, default: Optional[str] = None, *, required: bool = False,
               hint: str = "") -> str:
    """A secret: the content of the file `<name>_FILE` names (Compose secrets, /run/secrets/...),
    else the variable `<name>` itself. A file keeps the value out of the container's environment
    (`docker inspect` shows the path only). Surrounding whitespace is stripped."""
    path = os.environ.get(f"{name}_FILE", "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as fh:
                value = fh.read().strip()
        except OSError as exc:
            raise ConfigError(f"{name}_FILE={path}: cannot read it ({exc.strerror})") from None
        if value or not required:
            return value or (default or "")
        raise ConfigError(f"{name}_FILE={path} is empty" + (f": {hint}" if hint else ""))
    return env_str(name, default, required=required, hint=hint)


def redis_auth() -> dict:
    """Redis login of this service as redis-py keyword arguments: REDIS_USERNAME (an ACL user) and
    REDIS_PASSWORD(_FILE); empty when neither is set (a Redis without authentication)."""
    auth = {}
    username = env_str("REDIS_USERNAME", "")
    password = env_secret("REDIS_PASSWORD", "")
    if username:
        auth["username"] = username
    if password:
        auth["password"] = password
    return auth


def _env_number(name: str, default, cast, kind: str, minimum, maximum):
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        raise ConfigError(f"environment variable {name}={raw!r} is not {kind}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(f"environment variable {name}={value} is below the minimum {minimum}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"environment variable {name}={value} is above the maximum {maximum}")
    return value


def env_int(name: str, default: int, *, minimum: Optional[int] = None,
            maximum: Optional[int] = None) -> int:
    return _env_number(name, default, int, "an integer", minimum, maximum)


def env_float(name: str, default: float, *, minimum: Optional[float] = None) -> float:
    return _env_number(name, default, float, "a number", minimum, None)


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"environment variable {name}={raw!r} is not a boolean (use true/false)")


def env_list(name: str, default: tuple[str, ...] = ()) -> tuple[str, ...]:
    raw = os.environ.get(name, "")
    items = tuple(x.strip() for x in raw.split(",") if x.strip())
    return items or tuple(default)


def normalize_pair(pair: str) -> str:
    return pair.strip().upper().replace("/", "_")


@dataclass(frozen=True)
class FxSettings:
    """The settings that the inference API and the pipeline share (docs/contracts.md)."""

    redis_host: str
    redis_port: int
    mlflow_tracking_uri: str
    model_name: str
    model_alias: str
    feast_repo_path: Path
    data_dir: Path
    pairs: tuple[str, ...]

    @classmethod
    def from_env(cls) -> "FxSettings":
        pairs = tuple(normalize_pair(p) for p in env_list("FX_PAIRS", DEFAULT_PAIRS))
        return cls(
            redis_host=env_str("REDIS_HOST", "redis"),
            redis_port=env_int("REDIS_PORT", 6379, minimum=1, maximum=65535),
            mlflow_tracking_uri=env_str("MLFLOW_TRACKING_URI", "http://mlflow:5000"),
            model_name=env_str("FX_MODEL_NAME", "fx-direction"),
            model_alias=env_str("FX_MODEL_ALIAS", "serving"),
            feast_repo_path=Path(env_str("FEAST_REPO_PATH", default_feast_repo_path())),
            data_dir=Path(env_str("FX_DATA_DIR", "/data")),
            pairs=pairs,
        )


def default_feast_repo_path() -> str:
    """The feature repo shipped next to this package (/app/fxservices/feature_repo in images)."""
    return str(Path(__file__).resolve().parent.parent / "feature_repo")
