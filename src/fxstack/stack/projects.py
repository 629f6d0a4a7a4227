"""Which stack the harness drives: the FX pipeline (the default) or bsopt (`fxstack up bsopt`).

A stack is a Compose file, a project name, and the env file its secrets live in. The command
line picks one for the whole process by setting FXSTACK_STACK (the same way FXSTACK_PROJECT and
FXSTACK_ENV_FILE already steer the harness in tests), so compose.py and docker_state.py resolve
the right files and containers without every function growing a parameter.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import FxError


@dataclass(frozen=True)
class StackDef:
    name: str
    project: str                 # Compose project name (FXSTACK_PROJECT overrides)
    compose_file: str            # in compose/
    env_file: str                # in compose/ (FXSTACK_ENV_FILE overrides)
    secrets: tuple[str, ...] = ()
    urls: dict[str, tuple[str, str, str]] = field(default_factory=dict)


FX = StackDef("fx", "fxstack", "docker-compose.yml", ".env")
BSOPT = StackDef(
    "bsopt", "bsopt", "bsopt.yml", "bsopt.env",
    secrets=("BSOPT_POSTGRES_PASSWORD", "BSOPT_DB_PASSWORD", "BSOPT_UNUSED_DB_PASSWORD"),
    urls={"api": ("bsopt API (OpenAPI docs; POST /graphql)", "/docs", "no login (reachable on 127.0.0.1 only)"),
          "neural-pricing": ("bsopt neural pricing", "/docs", "no login (reachable on 127.0.0.1 only)")},
)
STACKS = {s.name: s for s in (FX, BSOPT)}


def active() -> StackDef:
    name = os.environ.get("FXSTACK_STACK") or "fx"
    try:
        return STACKS[name]
    except KeyError:
        raise FxError(f"FXSTACK_STACK={name!r} is not a stack", hint=f"stacks: {', '.join(STACKS)}") from None


def select(name: str | None) -> StackDef:
    """Make `name` the stack of this process (None: leave the FX default)."""
    if name is None:
        return active()
    if name not in STACKS:
        raise FxError(f"no stack named {name!r}", hint=f"stacks: {', '.join(STACKS)} (none = fx)")
    os.environ["FXSTACK_STACK"] = name
    return STACKS[name]
