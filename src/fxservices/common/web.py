"""The FX services' use of the service kit (servicekit.web): the inference API and the FinGPT
service answer errors, limit bodies and count requests exactly as bsopt's services do.

The body limit is FX_MAX_BODY_BYTES (default 64 KiB). Imports FastAPI: only the services that
run it import this module (the Airflow images ship fxservices.common without it).
"""
from __future__ import annotations

import logging
from typing import Mapping, Optional

from fastapi import FastAPI
from servicekit import web as kit

from fxservices.common.config import env_int

MAX_BODY_ENV = "FX_MAX_BODY_BYTES"
DEFAULT_MAX_BODY_BYTES = 64 * 1024


def max_body_bytes() -> int:
    """FX_MAX_BODY_BYTES, default 64 KiB (ConfigError naming the variable when malformed)."""
    return env_int(MAX_BODY_ENV, DEFAULT_MAX_BODY_BYTES, minimum=1)


def install(app: FastAPI, *, requests, latency, accepted: Mapping[str, str],
            log: logging.Logger, max_bytes: Optional[int] = None) -> None:
    """The kit on `app`, with the body limit of FX_MAX_BODY_BYTES unless `max_bytes` is given."""
    kit.install(app, requests=requests, latency=latency, accepted=accepted, log=log,
                max_bytes=max_body_bytes() if max_bytes is None else max_bytes,
                body_setting=MAX_BODY_ENV)
