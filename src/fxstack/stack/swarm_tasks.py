"""The tasks of a Swarm stack per node: what `fxstack status` and `fxstack deploy swarm --status`
print (one implementation; the cluster package builds on it). The docker CLI, not the SDK: it
is what `docker stack` itself is, and it reaches any manager named by -H or DOCKER_HOST."""

from __future__ import annotations

import shutil
import subprocess

from ..errors import FxError


def docker(*args: str, host: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    if shutil.which("docker") is None:
        raise FxError("the docker CLI is not installed", hint="install docker.io (scripts/bootstrap.sh does)")
    cmd = ["docker", *(["-H", host] if host else []), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise FxError(f"`{' '.join(cmd)}` failed: {(proc.stderr or proc.stdout).strip()[-600:]}",
                      hint="is this node a Swarm manager? (`docker swarm init`, `docker node ls`)")
    return proc


def tasks_per_node(project: str, host: str | None = None) -> dict[str, list[str]]:
    """node -> the running tasks of the stack on it (`docker stack ps`)."""
    out = docker("stack", "ps", project, "--filter", "desired-state=running",
                 "--format", "{{.Node}}\t{{.Name}}\t{{.CurrentState}}", host=host).stdout
    nodes: dict[str, list[str]] = {}
    for line in out.splitlines():
        node, name, state = (line.split("\t") + ["", ""])[:3]
        nodes.setdefault(node, []).append(f"{name} ({state})")
    return nodes


def status_lines(project: str, host: str | None = None) -> list[str] | None:
    """Tasks per node of the Swarm stack `project`, as lines to print; None when this Docker is
    not a Swarm manager or no such stack is deployed (so `fxstack status` can always ask)."""
    if shutil.which("docker") is None:
        return None
    info = docker("info", "--format", "{{.Swarm.ControlAvailable}}", host=host, check=False)
    if info.returncode != 0 or info.stdout.strip() != "true":
        return None
    stacks = docker("stack", "ls", "--format", "{{.Name}}", host=host, check=False).stdout.split()
    if project not in stacks:
        return None
    lines = [f"Swarm stack {project}:"]
    for node, tasks in sorted(tasks_per_node(project, host).items()):
        lines.append(f"  {node}: {len(tasks)} task(s)")
        lines += [f"    {t}" for t in sorted(tasks)]
    return lines
