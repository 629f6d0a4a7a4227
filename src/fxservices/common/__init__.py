"""Shared helpers of the services: environment (docs/contracts.md) and logging."""
from fxservices.common.config import (  # noqa: F401
    ConfigError,
    FxSettings,
    env_bool,
    env_float,
    env_int,
    env_list,
    env_str,
    normalize_pair,
)
from fxservices.common.logs import setup_logging  # noqa: F401
