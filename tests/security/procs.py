"""What the security tier reads about a running container: its processes as the host kernel sees
them (/proc), and its main process (PID 1 is tini; the service is tini's child)."""

from __future__ import annotations

import os
from pathlib import Path


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
