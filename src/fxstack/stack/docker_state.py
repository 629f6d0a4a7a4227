"""What Docker says about the stack: daemon reachability, images, containers, ports, logs."""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass

from ..docker_api import client
from ..errors import FxError
from .compose import PublishedPort


def daemon_reachable() -> tuple[bool, str]:
    try:
        client()
        return True, ""
    except FxError as exc:
        return False, str(exc)


def missing_images(dc, refs: dict[str, str]) -> dict[str, str]:
    """{env var: ref} of the refs Docker does not have."""
    from docker.errors import ImageNotFound

    missing = {}
    for var, ref in refs.items():
        try:
            dc.images.get(ref)
        except ImageNotFound:
            missing[var] = ref
    return missing


@dataclass
class ServiceState:
    service: str
    container: str | None
    state: str  # created / running / restarting / exited / ... / missing
    health: str  # healthy / unhealthy / starting / none
    exit_code: int | None
    restarts: int
    started_at: str | None
    ports: dict
    created: str = ""

    @property
    def healthy(self) -> bool:
        return self.state == "running" and self.health in ("healthy", "none")


def project_containers(dc, project: str, all_: bool = True, services: set[str] | None = None) -> list:
    """The Compose project's containers (of `services` only, when given), inspected; ones removed
    meanwhile (Compose recreating) are skipped."""
    from docker.errors import NotFound

    found = []
    for c in dc.containers.list(all=all_, sparse=True,
                                filters={"label": f"com.docker.compose.project={project}"}):
        # (a sparse object holds the list endpoint's fields: its labels, not Config)
        if services is not None and (c.attrs.get("Labels") or {}).get("com.docker.compose.service") not in services:
            continue
        try:
            c.reload()
        except NotFound:
            continue
        found.append(c)
    return found


def service_states(dc, project: str, services: set[str] | None = None) -> dict[str, ServiceState]:
    """The newest container of each service in the project (of `services` only, when given;
    one-offs excluded)."""
    result: dict[str, ServiceState] = {}
    for c in project_containers(dc, project, services=services):
        labels = c.labels
        if labels.get("com.docker.compose.oneoff") == "True":
            continue
        svc = labels.get("com.docker.compose.service", c.name)
        attrs = c.attrs
        st = attrs.get("State", {})
        health = (st.get("Health") or {}).get("Status", "none")
        state = ServiceState(
            service=svc,
            container=c.name,
            state=st.get("Status", "unknown"),
            health=health,
            exit_code=st.get("ExitCode") if st.get("Status") == "exited" else None,
            restarts=attrs.get("RestartCount", 0),
            started_at=st.get("StartedAt"),
            ports=(attrs.get("NetworkSettings") or {}).get("Ports") or {},
            created=attrs.get("Created") or "",
        )
        prev = result.get(svc)
        if prev is None or (state.started_at or "") > (prev.started_at or ""):
            result[svc] = state
    return result


def published_url(st: ServiceState | None, path: str = "/") -> str | None:
    """http://host:port<path> of the service's first published port, None when it has none."""
    if not st:
        return None
    for bindings in st.ports.values():
        for b in bindings or []:
            if b.get("HostPort"):
                return f"http://{b.get('HostIp') or '127.0.0.1'}:{b['HostPort']}{path}"
    return None


def last_logs(dc, container: str, lines: int = 30) -> str:
    try:
        raw = dc.containers.get(container).logs(tail=lines, stdout=True, stderr=True)
    except Exception as exc:  # the container may be gone by now
        return f"(no logs: {exc})"
    return raw.decode("utf-8", "replace").rstrip()


def port_in_use(host: str, port: int) -> bool:
    """True when something already listens on host:port (we try to bind it, as Docker would)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # SO_REUSEADDR as docker-proxy (Go) binds: connections in TIME_WAIT from a stack that was
    # just stopped do not block it, only a listener does
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind((host, port))
    except OSError as exc:
        return exc.errno in (errno.EADDRINUSE, errno.EACCES)
    finally:
        s.close()
    return False


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A port nothing on 127.0.0.1 holds now (the kernel's pick), for tests and benchmarks."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_conflicts(ports: list[PublishedPort], env: dict[str, str], ours: set[int] | None = None,
                   others: set[int] | None = None) -> list[tuple[PublishedPort, int]]:
    """Published ports that something other than our own running containers holds: a
    listener on the host, or another container's published port (`others`)."""
    ours, others = ours or set(), others or set()
    conflicts = []
    for p in ports:
        number = p.port(env)
        if number in ours:
            continue
        if number in others or port_in_use(p.host_ip, number):
            conflicts.append((p, number))
    return conflicts


def host_ports_by_owner(dc, project: str) -> tuple[set[int], set[int]]:
    """Host ports that running containers publish: (our project's, other projects').

    Ours may be published again (re-running `up` is fine). Others' are asked of Docker, not
    found by binding: a daemon run with --userland-proxy=false (as ./fx starts it) forwards
    published ports with iptables alone, so nothing listens on the host for a bind to hit."""
    from docker.errors import NotFound

    ours: set[int] = set()
    others: set[int] = set()
    for c in dc.containers.list(sparse=True):
        try:
            c.reload()
        except NotFound:  # removed meanwhile
            continue
        held = ours if c.labels.get("com.docker.compose.project") == project else others
        for bindings in ((c.attrs.get("NetworkSettings") or {}).get("Ports") or {}).values():
            for b in bindings or []:
                if b.get("HostPort", "").isdigit():
                    held.add(int(b["HostPort"]))
    return ours, others


def describe_conflicts(conflicts: list[tuple[PublishedPort, int]]) -> str:
    lines = []
    for p, number in conflicts:
        lines.append(f"port {p.host_ip}:{number} for service {p.service} is already in use "
                     f"-> set {p.var} to a free port in the stack's env file (or stop what listens there)")
    return "\n".join(lines)
