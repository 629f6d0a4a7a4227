"""A stack deployed on Swarm as the stacks' own code sees a running stack (stacks.model.Running):
its env file and settings, and the base URLs of its published services, so the end-to-end runners
written for Compose run unchanged against a cluster. The entry service (the API) is reached
through the load balancer of a node; any other service through the host-mode port of the node its
task runs on (`--publish SERVICE[=PORT]` of `deploy swarm`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..errors import FxError
from ..stack.target import Target
from . import swarm


def node_addresses(host: str | None = None) -> dict[str, str]:
    """node host name -> its address in the Swarm (what its host-mode ports listen on)."""
    ids = swarm.docker("node", "ls", "-q", host=host).stdout.split()
    out = {}
    for info in json.loads(swarm.docker("node", "inspect", *ids, host=host).stdout):
        addr = info["Status"].get("Addr") or ""
        if addr in ("", "0.0.0.0"):  # a manager may report no address of its own: its listen address
            addr = (info.get("ManagerStatus") or {}).get("Addr", "").rsplit(":", 1)[0]
        out[info["Description"]["Hostname"]] = addr
    return out


def running_nodes(service: str, host: str | None = None) -> list[str]:
    """The nodes where the service has a task running now."""
    out = swarm.docker("service", "ps", service, "--filter", "desired-state=running",
                       "--format", "{{.Node}}\t{{.CurrentState}}", host=host, check=False).stdout
    return sorted({line.split("\t")[0] for line in out.splitlines() if "\tRunning" in line})


def published_port(service: str, host: str | None = None) -> int | None:
    out = swarm.docker("service", "inspect", service, "--format", "{{json .Spec.EndpointSpec.Ports}}",
                       host=host, check=False).stdout.strip()
    ports = json.loads(out) if out and out != "null" else []
    return ports[0]["PublishedPort"] if ports else None


@dataclass
class SwarmRunning:
    target: Target                 # the stack, its env file and secrets (as deployed)
    host: str | None = None        # a manager's Docker socket
    entry_node: str | None = None  # whose load balancer clients use (default: the first node)

    @property
    def env_path(self) -> Path:
        return self.target.env_path

    def settings(self) -> dict[str, str]:
        return self.target.settings()

    def _service(self, name: str) -> str:
        return f"{self.target.project_name}_{name}"

    def urls(self, services) -> dict[str, str]:
        addresses = node_addresses(self.host)
        entry, _, _ = swarm.ENTRY.get(self.target.stack.name, ("", 0, ""))
        out = {}
        for name in services:
            if name == entry:
                node = self.entry_node or sorted(addresses)[0]
                out[name] = f"http://{addresses[node]}:{swarm.LB_PORT}"
                continue
            port = published_port(self._service(name), self.host)
            if port is None:
                raise FxError(f"service {name} of stack {self.target.project_name} publishes no port",
                              hint=f"deploy with --publish {name}[=PORT]")
            nodes = running_nodes(self._service(name), self.host)
            if not nodes:
                raise FxError(f"service {name} of stack {self.target.project_name} has no running task",
                              hint=f"`docker service ps {self._service(name)} --no-trunc` says why")
            out[name] = f"http://{addresses[nodes[0]]}:{port}"
        return out
