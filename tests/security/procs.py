"""What the security tier reads about a running container: its processes as the host kernel sees
them (/proc), and its main process (PID 1 is tini; the service is tini's child)."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from fxstack.poll import TimedOut, poll


def proc_status(pid: int) -> dict[str, str]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value.strip()
    return fields


def container_pids(c) -> list[int]:
    """Every process of the container, as host pids (from its cgroup, not `ps` inside it)."""
    top = c.top(ps_args="-eo pid")
    return [int(row[0]) for row in top["Processes"]]


def user_namespace(pid: int) -> str:
    return os.readlink(f"/proc/{pid}/ns/user")


def main_pid(c) -> int:
    """The service's main process: tini's child (PID 1 in the container is tini)."""
    init = c.attrs["State"]["Pid"]
    children = Path(f"/proc/{init}/task/{init}/children").read_text().split()
    return int(children[0]) if children else init


def wait_for(predicate, timeout: float, what: str) -> None:
    try:
        poll(lambda: True if predicate() else None, timeout=timeout, interval=1)
    except TimedOut:
        raise AssertionError(f"timed out after {timeout:.0f} s: {what}") from None


def _restarted_and_healthy(dc, name: str, restarts_before: int) -> bool:
    c = dc.containers.get(name)
    s = c.attrs["State"]
    return c.attrs["RestartCount"] > restarts_before and s["Status"] == "running" and \
        (s.get("Health") or {}).get("Status") == "healthy"


def kill_and_wait(dc, containers: dict, services: list[str], timeout: float = 240) -> None:
    """kill -9 the main process of each named service ({service: container} of one stack), then
    wait until Docker has restarted each and its health check passes again."""
    before = {svc: (containers[svc].name, containers[svc].attrs["RestartCount"]) for svc in services}
    for svc in services:
        os.kill(main_pid(containers[svc]), signal.SIGKILL)
    for svc, (name, restarts) in before.items():
        wait_for(lambda: _restarted_and_healthy(dc, name, restarts), timeout,
                 f"{svc} restarted and healthy after kill -9 of its main process")
