"""Each service's own readiness, asked through its published port once Docker calls it healthy.

A container's health check says the process answers; it does not say the service can do its
job (seen: after `down` + `up` with a model registered, the first `POST /predict` answered 503
although every container was healthy). So `up` asks each service what only it knows: the
probes are the stack's own (StackDef.probes, e.g. fxstack.stacks.fx_ready); this module asks
them until all say ready.
"""

from __future__ import annotations

from typing import Callable, Mapping, TextIO

import requests

from ..errors import FxError
from ..poll import TimedOut, poll
from ..stacks.model import Answer, Probe

__all__ = ["Answer", "Probe", "ask", "wait_ready"]


def ask(probe: Probe, urls: dict[str, str], settings: dict[str, str]) -> Answer:
    """One probe; a service that does not answer yet is not ready (connection refused, timeout)."""
    try:
        return probe(urls, settings)
    except (requests.RequestException, FxError, ValueError, KeyError) as exc:
        return Answer(False, f"{type(exc).__name__}: {str(exc)[:300]}")


def wait_ready(urls: dict[str, str], settings: dict[str, str], *, timeout: float, out: TextIO,
               elapsed: Callable[[], float], probes: Mapping[str, Probe]) -> dict[str, float]:
    """Ask every probe whose service is published in `urls` until all say ready; return
    {service: seconds (by `elapsed`) when it became ready}. FxError after `timeout` seconds,
    naming each service still waiting and what it last said."""
    waiting = {svc: probe for svc, probe in probes.items() if svc in urls}
    last: dict[str, Answer] = {}
    ready: dict[str, float] = {}

    def everyone_ready() -> dict[str, float] | None:
        for svc, probe in list(waiting.items()):
            last[svc] = answer = ask(probe, urls, settings)
            if answer.ready:
                ready[svc] = elapsed()
                del waiting[svc]
                print(f"  [{ready[svc]:6.1f}s] {svc} ready: {answer.detail}", file=out, flush=True)
        return ready if not waiting else None

    try:
        # a quarter second: only services not yet ready are asked, each a request or two
        return poll(everyone_ready, timeout=timeout, interval=0.25)
    except TimedOut:
        lines = "\n".join(f"  {svc}: {last[svc].detail}" for svc in waiting)
        raise FxError(f"healthy but not ready within {timeout:.0f} s:\n{lines}", where=", ".join(waiting),
                      hint=f"`fxstack logs {next(iter(waiting))}` shows why; `fxstack up` again waits anew") from None
