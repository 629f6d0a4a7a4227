"""Every stack fxstack knows, by name: what `fxstack up [STACK]` and the completeness test walk."""

from __future__ import annotations

from ..errors import FxError
from .bsopt import BSOPT
from .fx import FX
from .model import StackDef

STACKS: dict[str, StackDef] = {s.name: s for s in (FX, BSOPT)}
DEFAULT = FX.name


def get(name: str | None) -> StackDef:
    """The stack called `name` (None: the FX stack)."""
    try:
        return STACKS[name or DEFAULT]
    except KeyError:
        raise FxError(f"no stack named {name!r}", hint=f"stacks: {', '.join(STACKS)} (none = {DEFAULT})") from None
