"""The stack as a cluster engine needs it: one `Service` per Compose service, read from Compose's
resolved configuration (`docker-compose config`, the stack model every engine here starts from),
with images resolved to registry digests and each service classified:

- stateful: it mounts a named volume no other service mounts (Postgres, Redis, MLflow's
  artifacts, Prometheus): one replica, pinned to a node (Swarm) or a StatefulSet with its own
  volume claim (Kubernetes);
- job: `restart: "no"` (airflow-init, db-init): runs to completion once;
- stateless: everything else, replicated where `REPLICAS` says. A named volume that several
  services mount (the FX data directory with Feast's registry, bsopt's models) is *shared*: on
  more than one node it needs storage every node reaches (NFS on Swarm, ReadWriteMany on
  Kubernetes).

Both renderers (swarm.py, k8s.py) take these values; neither reads Compose's JSON itself.
Strings keep Compose's escape (`$$` for a literal `$`): `docker stack deploy` interpolates the
same way, and Kubernetes reads `$$` as `$` in command, args and env.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import FxError

# Replicas beyond one, per stack: the services that scale out (the inference API and Airflow's
# Celery workers; bsopt's API and Celery worker). `--replicas SERVICE=N` changes them.
REPLICAS: dict[str, dict[str, int]] = {
    "fx": {"fastapi": 2, "airflow-worker": 2},
    "bsopt": {"api": 2, "worker": 2},
}

# What a service does differently when it has several replicas. The Compose file names the
# single Airflow worker `celery@airflow-worker`; two replicas with one Celery node name would
# shadow each other in the broker, so on a cluster each takes its own host name (`%h`).
REPLICATED_COMMAND: dict[str, dict[str, list[str]]] = {
    "fx": {"airflow-worker": ["airflow", "celery", "worker", "--celery-hostname", "celery@%h"]},
}

# Ports a service listens on that neither its image spec, its published ports nor its health
# check names (statsd arrives over UDP).
EXTRA_PORTS: dict[str, dict[str, tuple[str, ...]]] = {
    "fx": {"statsd-exporter": ("9125/udp",)},
}


@dataclass(frozen=True)
class Port:
    number: int
    protocol: str = "tcp"


@dataclass(frozen=True)
class Mount:
    kind: str                 # "volume", "shared" (a volume several services mount), "config", "tmpfs"
    target: str
    source: str = ""          # volume name, or the host file of a config
    read_only: bool = False
    size: int | None = None   # tmpfs bytes
    mode: int | None = None   # tmpfs mode
    uid: int | None = None    # tmpfs owner


@dataclass(frozen=True)
class Health:
    command: list[str]        # exec form (CMD-SHELL becomes /bin/sh -c)
    interval: float
    timeout: float
    retries: int
    start_period: float
    http: tuple[int, str] | None = None   # (port, path) when the check is a plain local GET
    tcp: int | None = None                # a port when the check only connects


@dataclass(frozen=True)
class ImageInfo:
    ref: str                  # registry/prefix/name@sha256:...
    uid: int
    gid: int
    ports: tuple[int, ...] = ()


@dataclass
class Service:
    name: str
    image: ImageInfo
    kind: str                             # "stateful", "stateless", "job"
    replicas: int
    command: list[str] | None
    entrypoint: list[str] | None
    environment: dict[str, str]
    secrets: list[str]                    # secret names, mounted at /run/secrets/<name>
    mounts: list[Mount]
    ports: list[Port]
    published: list[Port]                 # the container ports Compose publishes
    health: Health | None
    memory: int | None                    # bytes
    pids: int | None
    networks: list[str]
    read_only: bool
    cap_drop: list[str]
    no_new_privileges: bool
    seccomp: str | None                   # a custom profile file (Compose security_opt seccomp=)
    hostname: str | None
    stop_grace: float | None
    shm_size: int | None
    gpus: int = 0
    logging: dict = field(default_factory=dict)


@dataclass
class StackModel:
    name: str                             # fx, bsopt
    project: str                          # Compose project name: the prefix of every object
    services: dict[str, Service]
    volumes: dict[str, list[str]]         # named volume -> services that mount it
    secrets: dict[str, Path]              # secret name -> the file Compose reads it from
    networks: dict[str, bool]             # network -> internal

    def shared_volumes(self) -> list[str]:
        return sorted(v for v, users in self.volumes.items() if len(users) > 1)


_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}


def seconds(text: str | int | float | None, default: float = 0) -> float:
    """A Go duration as Compose writes it ("1m0s", "5s", "300ms") in seconds."""
    if text is None:
        return default
    if isinstance(text, (int, float)):
        return float(text)
    total, rest = 0.0, text.strip()
    for number, unit in re.findall(r"([0-9.]+)(ns|us|µs|ms|s|m|h)", rest):
        total += float(number) * _UNITS[unit]
    return total


def size_bytes(text: str | int | None) -> int | None:
    """"64m", "1g", "536870912" -> bytes (Docker's units: powers of 1024)."""
    if text is None or text == "":
        return None
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"(\d+)([bkmg]?)b?", str(text).strip().lower())
    if not m:
        raise FxError(f"size {text!r} is not a number of bytes with an optional k/m/g")
    return int(m[1]) * {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m[2]]


def _tmpfs(entry: str) -> Mount:
    target, _, opts = entry.partition(":")
    values = dict(o.split("=", 1) for o in opts.split(",") if "=" in o)
    return Mount("tmpfs", target, size=size_bytes(values.get("size")),
                 mode=int(values["mode"], 8) if "mode" in values else None,
                 uid=int(values["uid"]) if "uid" in values else None)


_HTTP = re.compile(r"urlopen\('http://127\.0\.0\.1:(\d+)(/[^']*)'")
_TCP = re.compile(r"create_connection\(\('127\.0\.0\.1', (\d+)\)|/dev/tcp/127\.0\.0\.1/(\d+)")
_PORT_IN = re.compile(r"127\.0\.0\.1[:/](\d+)|-p (\d+)\b|'127\.0\.0\.1', (\d+)")


def _health(check: dict | None) -> Health | None:
    if not check or check.get("disable") or not check.get("test"):
        return None
    test = list(check["test"])
    if test[0] == "NONE":
        return None
    command = ["/bin/sh", "-c", test[1]] if test[0] == "CMD-SHELL" else test[1:]
    text = " ".join(command)
    http = _HTTP.search(text)
    tcp = _TCP.search(text)
    bash_http = "/dev/tcp/" in text and "GET " in text  # an HTTP GET over bash's /dev/tcp
    path = re.search(r"GET (/\S*) HTTP", text)
    return Health(
        command=command, interval=seconds(check.get("interval"), 30), timeout=seconds(check.get("timeout"), 30),
        retries=int(check.get("retries") or 3), start_period=seconds(check.get("start_period")),
        http=(int(http[1]), http[2]) if http else
             ((int(tcp[2]), path[1]) if tcp and tcp[2] and bash_http and path else None),
        tcp=int(tcp[1] or tcp[2]) if tcp and not bash_http else None)


def _health_ports(check: dict | None) -> set[int]:
    if not check or not check.get("test"):
        return set()
    text = " ".join(check["test"][1:])
    return {int(next(g for g in m if g)) for m in _PORT_IN.findall(text)}


def image_name(ref: str) -> str:
    """`fx-fastapi:0123abcd` (what images.env holds) -> `fx-fastapi`."""
    name = ref.split("@", 1)[0]
    return name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name


def build_model(stack: str, project: str, config: dict, resolve: Callable[[str], ImageInfo],
                replicas: dict[str, int] | None = None) -> StackModel:
    """The cluster model of a stack from Compose's resolved config. `resolve` turns a service's
    image ref into the registry digest and the image's user and ports."""
    services_cfg = config.get("services") or {}
    volumes: dict[str, list[str]] = {v: [] for v in (config.get("volumes") or {})}
    for name, svc in services_cfg.items():
        for vol in svc.get("volumes") or []:
            if vol.get("type") == "volume" and vol.get("source"):
                volumes.setdefault(vol["source"], []).append(name)
    want = {**REPLICAS.get(stack, {}), **(replicas or {})}
    unknown = sorted(set(replicas or {}) - set(services_cfg))
    if unknown:
        raise FxError(f"--replicas names {', '.join(unknown)}, not a service of the {stack} stack",
                      hint=f"services: {', '.join(sorted(services_cfg))}")
    services = {}
    for name, svc in sorted(services_cfg.items()):
        image = resolve(svc["image"])
        mounts: list[Mount] = []
        own_volume = False
        for vol in svc.get("volumes") or []:
            kind = vol.get("type")
            if kind == "volume":
                shared = len(volumes.get(vol["source"], [])) > 1
                own_volume |= not shared
                mounts.append(Mount("shared" if shared else "volume", vol["target"], vol["source"],
                                    bool(vol.get("read_only"))))
            elif kind == "bind":
                source = Path(vol["source"])
                if not source.is_file():
                    raise FxError(f"service {name} binds {source}, which is not a file: a cluster "
                                  "gets files as configs, directories it cannot get",
                                  where=f"{stack}: services.{name}.volumes",
                                  hint="mount a named volume there, or bind single files")
                mounts.append(Mount("config", vol["target"], str(source), True))
            elif kind == "tmpfs":
                t = vol.get("tmpfs") or {}
                mounts.append(Mount("tmpfs", vol["target"], size=t.get("size"), mode=t.get("mode")))
        mounts += [_tmpfs(e) for e in svc.get("tmpfs") or []]
        if svc.get("restart") == "no":
            kind = "job"
        elif own_volume:
            kind = "stateful"
        else:
            kind = "stateless"
        count = want.get(name, 1)
        if kind != "stateless" and count > 1:
            raise FxError(f"service {name} is {kind} (it owns a volume or runs once): one replica only",
                          where=f"{stack}: {name}", hint=f"drop --replicas {name}=...")
        command = svc.get("command")
        if count > 1 and name in REPLICATED_COMMAND.get(stack, {}):
            command = REPLICATED_COMMAND[stack][name]
        published = [Port(int(p["target"]), p.get("protocol") or "tcp") for p in svc.get("ports") or []]
        ports = {(p.number, p.protocol) for p in published}
        if not svc.get("command") and not svc.get("entrypoint"):
            ports |= {(p, "tcp") for p in image.ports}
        ports |= {(p, "tcp") for p in _health_ports(svc.get("healthcheck"))}
        for extra in EXTRA_PORTS.get(stack, {}).get(name, ()):
            number, _, proto = extra.partition("/")
            ports.add((int(number), proto or "tcp"))
        gpus = 0
        for dev in ((svc.get("deploy") or {}).get("resources") or {}).get("reservations", {}).get("devices") or []:
            if "gpu" in (dev.get("capabilities") or []):
                gpus += int(dev.get("count") or 1) if str(dev.get("count")) != "all" else 1
        seccomp = next((o.split("=", 1)[1] for o in svc.get("security_opt") or [] if o.startswith("seccomp=")),
                       None)
        services[name] = Service(
            name=name, image=image, kind=kind, replicas=count, command=command, entrypoint=svc.get("entrypoint"),
            environment={k: str(v) for k, v in (svc.get("environment") or {}).items() if v is not None},
            secrets=[s["source"] for s in svc.get("secrets") or []], mounts=mounts,
            ports=[Port(n, p) for n, p in sorted(ports)], published=published,
            health=_health(svc.get("healthcheck")), memory=size_bytes(svc.get("mem_limit")),
            pids=svc.get("pids_limit"), networks=sorted(svc.get("networks") or {}),
            read_only=bool(svc.get("read_only")), cap_drop=list(svc.get("cap_drop") or []),
            no_new_privileges=any(o.replace(" ", "") in ("no-new-privileges:true", "no-new-privileges")
                                  for o in svc.get("security_opt") or []),
            seccomp=seccomp, hostname=svc.get("hostname"), stop_grace=seconds(svc.get("stop_grace_period"), 0) or None,
            shm_size=size_bytes(svc.get("shm_size")), gpus=gpus, logging=svc.get("logging") or {})
    secrets = {name: Path(s["file"]) for name, s in (config.get("secrets") or {}).items() if s.get("file")}
    networks = {name: bool(n.get("internal")) for name, n in (config.get("networks") or {}).items()}
    return StackModel(stack, project, services, {v: sorted(u) for v, u in volumes.items() if u}, secrets,
                      networks)
