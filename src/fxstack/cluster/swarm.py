"""`fxstack deploy swarm [STACK]`: the stack model as a `docker stack deploy` file.

`docker stack deploy` (20.10) takes a Compose file but not all of it: it refuses `mem_limit` and
`pids_limit`, silently drops short-form `tmpfs`, `depends_on` and `shm_size`, and ignores
`security_opt` and `restart`. So the file written here says each thing the way Swarm honours it:
deploy.resources (memory, pids), long-form tmpfs volumes, deploy.restart_policy, secrets with
owner and mode, configs for the files Compose binds. `no-new-privileges` has no service key:
the nodes' dockerd runs with --no-new-privileges (docs/cluster.md).

Placement: a stateful service is pinned to the node labelled `fxstack.<project>.<service>=true`
(its named volume lives on that node); the GPU service to `fxstack.gpu=true`; stateless ones are
replicated and spread by Swarm's scheduler. Networks are overlays, internal where Compose's are.
Where the kernel has no IPVS (no routing mesh, no virtual IPs), every service uses
`endpoint_mode: dnsrr` and publishes in host mode; with IPVS, VIPs and the ingress mesh.

One entry address: HAProxy (our haproxy image) on every node, finding the API's tasks through
Swarm's DNS (`tasks.<service>`) and health-checking each, so a client needs any node's address.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..errors import FxError
from ..image.store import atomic_write_bytes
from ..stack.swarm_tasks import docker, status_lines, tasks_per_node  # noqa: F401 (the cluster's API)
from .model import ImageInfo, Mount, Service, StackModel

# The service the load balancer fronts, per stack: (service, port, health path)
# (the readiness path, not the liveness one: a new API task joins the balancer once it serves,
# not while its workers still load the model, which is what a rolling update would otherwise
# send requests into)
ENTRY: dict[str, tuple[str, int, str]] = {"fx": ("fastapi", 8000, "/ready"), "bsopt": ("api", 8000, "/ready")}
LB_SERVICE = "lb"
LB_PORT = 8080
LB_CONFIG_TARGET = "/etc/fxstack/haproxy.cfg"
LB_HEALTH = "/lb-health"  # answered by HAProxy itself (monitor-uri): the balancer is up
# What the entry service's readiness answer (a 503's `missing`) says while a task is still
# warming up, per stack (fx: fxservices.inference, a worker loading the model or one not
# serving it yet). See entry_probe.
WARMING: dict[str, tuple[str, ...]] = {"fx": ("is being loaded", "not every worker serves")}


def entry_probe(port: int, path: str, warming: tuple[str, ...]) -> list[str]:
    """The entry service's Swarm health check: passes once the task can serve.

    Swarm adds a task to its service's DNS when the task's health check first passes, and
    HAProxy 2.6 sends requests to an address the moment DNS returns it, before its own first
    check of it ("start OK but check immediately" in its server.c). With a liveness check
    (fx: /health, which answers while the workers still import and load the model) every
    balancer connection sent one request to a new task of a rolling update and waited 2.4 to
    3.3 s for it (HAProxy's log: Tc 0, Tr 2,700 ms, state ----, 10 sessions on the new server
    when its first check timed out). So this check fails while the readiness answer says the
    task is warming up, and passes otherwise, also while something outside the task is missing
    (no model registered yet, Redis unreachable): every task shares that state, HAProxy's own
    check keeps requests away meanwhile, and a failing check would have Swarm replace tasks
    that cannot do better."""
    # bash's /dev/tcp, as the Compose check: a third of python3's CPU per check, which runs
    # every second. HTTP/1.0: the API closes after its answer, so `cat` reads it whole.
    if any(set(w) & set("'\\$`*?[]|") for w in warming):
        raise ValueError(f"a warm-up marker the probe cannot quote: {warming}")
    script = (f"exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' >&3 "
              "&& r=$(cat <&3) || exit 1\n"
              "s=${r%%$'\\n'*}\n"
              "[[ $s == *' 200 '* ]] && exit 0\n"
              "[[ $s == *' 503 '* ]] || exit 1\n"
              f"case $r in {'|'.join(f'*{w!r}*' for w in warming)}) exit 1;; esac\n")
    # `docker stack deploy` interpolates the file: a literal `$` is `$$` (as in Compose)
    return ["CMD", "bash", "-c", script.replace("$", "$$")]


def ipvs_available() -> bool:
    """The routing mesh and service VIPs need IPVS in the kernel (module ip_vs)."""
    if Path("/proc/net/ip_vs").exists():
        return True
    release = os.uname().release
    modules = Path("/lib/modules") / release
    return any(modules.rglob("ip_vs.ko*")) if modules.is_dir() else False


@dataclass(frozen=True)
class SwarmOptions:
    endpoint_mode: str = "dnsrr"          # "dnsrr" (no IPVS) or "vip"
    lb_image: ImageInfo | None = None     # None: no load balancer
    lb_port: int = LB_PORT
    publish: tuple[str, ...] = ()         # other services to publish (Compose's published ports)
    nfs: str | None = None                # SERVER:/EXPORT for the shared volumes
    shared_path: str | None = None        # a directory every node mounts from one shared filesystem


def publish_ports(opts: SwarmOptions) -> dict[str, int]:
    """--publish SERVICE or SERVICE=PORT -> {service: node port, 0 for the Compose port}."""
    out = {}
    for item in opts.publish:
        name, _, port = item.partition("=")
        if port and not port.isdigit():
            raise FxError(f"--publish {item!r} is not SERVICE or SERVICE=PORT", hint="e.g. --publish mlflow=15000")
        out[name] = int(port or 0)
    return out


def _mib(n: int) -> str:
    return f"{n // (1 << 20)}M" if n % (1 << 20) == 0 else str(n)


def _duration(seconds: float) -> str:
    return f"{int(seconds)}s" if seconds == int(seconds) else f"{int(seconds * 1000)}ms"


def _placement_label(model: StackModel, svc: Service) -> str:
    return f"fxstack.{model.project}.{svc.name}"


def _volumes(svc: Service) -> list[dict]:
    out = []
    for m in svc.mounts:
        if m.kind in ("volume", "shared"):
            out.append({"type": "volume", "source": m.source, "target": m.target, "read_only": m.read_only})
        elif m.kind == "tmpfs" and m.uid:
            # A tmpfs Compose gives to the service's user (its home): Swarm's tmpfs has no owner
            # option and its mode is not applied over a directory of the image (root 0755: not
            # writable). An anonymous volume starts as a copy of the image's directory, owner
            # included, and goes with the task's container.
            out.append({"type": "volume", "target": m.target})
        elif m.kind == "tmpfs":
            # long form: the short `tmpfs:` list is dropped by `docker stack deploy` without a word
            out.append({"type": "tmpfs", "target": m.target, **({"tmpfs": {"size": m.size}} if m.size else {})})
    if svc.shm_size:
        out.append({"type": "tmpfs", "target": "/dev/shm", "tmpfs": {"size": svc.shm_size}})
    return out


def _config_name(svc: Service, m: Mount) -> str:
    return f"{svc.name}-{Path(m.source).name}".replace(".", "-")


def service_entry(model: StackModel, svc: Service, opts: SwarmOptions) -> dict:
    entry: dict = {"image": svc.image.ref}
    if svc.entrypoint is not None:
        entry["entrypoint"] = svc.entrypoint
    if svc.command is not None:
        entry["command"] = svc.command
    if svc.environment:
        entry["environment"] = dict(sorted(svc.environment.items()))
    if svc.hostname:
        # one name per task: replicas must not share a host name (Celery node names, logs)
        entry["hostname"] = svc.hostname if svc.replicas == 1 else svc.hostname + "-{{.Task.Slot}}"
    elif svc.replicas > 1:
        entry["hostname"] = "{{.Service.Name}}-{{.Task.Slot}}"
    if svc.secrets:
        entry["secrets"] = [{"source": s, "target": s, "uid": str(svc.image.uid), "gid": str(svc.image.gid),
                             "mode": 0o400} for s in svc.secrets]
    configs = [m for m in svc.mounts if m.kind == "config"]
    if configs:
        entry["configs"] = [{"source": _config_name(svc, m), "target": m.target, "mode": 0o444} for m in configs]
    volumes = _volumes(svc)
    if volumes:
        entry["volumes"] = volumes
    if svc.networks:
        entry["networks"] = svc.networks
    entry["read_only"] = svc.read_only
    if svc.cap_drop:
        entry["cap_drop"] = svc.cap_drop
    if svc.logging:
        entry["logging"] = svc.logging
    if svc.stop_grace:
        entry["stop_grace_period"] = _duration(svc.stop_grace)
    if svc.health:
        h = svc.health
        test = ["CMD-SHELL", h.command[2]] if h.command[:2] == ["/bin/sh", "-c"] else ["CMD", *h.command]
        entry_name, entry_port, entry_path = ENTRY.get(model.name, ("", 0, ""))
        if svc.name == entry_name and model.name in WARMING:
            test = entry_probe(entry_port, entry_path, WARMING[model.name])
        entry["healthcheck"] = {"test": test, "interval": _duration(h.interval), "timeout": _duration(h.timeout),
                                "retries": h.retries, "start_period": _duration(h.start_period)}
    published = publish_ports(opts).get(svc.name)
    if published is not None:
        # SERVICE=PORT moves the first published port: host-mode ports share the nodes with the
        # load balancer's (a service on its port could run on no node)
        entry["ports"] = [{"target": p.number, "published": published if published and i == 0 else p.number,
                           "protocol": p.protocol, "mode": "host" if opts.endpoint_mode == "dnsrr" else "ingress"}
                          for i, p in enumerate(svc.published)]
    deploy: dict = {"mode": "replicated", "replicas": svc.replicas, "endpoint_mode": opts.endpoint_mode}
    limits: dict = {}
    if svc.memory:
        limits["memory"] = _mib(svc.memory)
    if svc.pids:
        limits["pids"] = svc.pids
    resources: dict = {"limits": limits} if limits else {}
    constraints = []
    if svc.gpus:
        resources["reservations"] = {"generic_resources": [
            {"discrete_resource_spec": {"kind": "NVIDIA-GPU", "value": svc.gpus}}]}
        constraints.append("node.labels.fxstack.gpu == true")
    if resources:
        deploy["resources"] = resources
    if svc.kind == "stateful":
        constraints.append(f"node.labels.{_placement_label(model, svc)} == true")
    if constraints:
        deploy["placement"] = {"constraints": constraints}
    # Replicas are spread by Swarm's scheduler itself (it picks the node with the fewest tasks of
    # the service). No max_replicas_per_node: with as many replicas as nodes left after a node
    # loss it deadlocks a start-first update.
    if svc.kind == "job":
        deploy["restart_policy"] = {"condition": "on-failure", "delay": "5s", "max_attempts": 10}
    else:
        deploy["restart_policy"] = {"condition": "any", "delay": "2s", "window": "30s"}
        # stateful: stop the old task first (one task owns the volume); stateless: start the new
        # one first, so a rolling update never leaves fewer healthy replicas than asked for, unless
        # it publishes a host-mode port (the new task cannot bind the old one's port on its node,
        # and Swarm's scheduler was seen leaving it pending)
        host_port = "ports" in entry and opts.endpoint_mode == "dnsrr"
        order = "stop-first" if svc.kind == "stateful" or svc.gpus or host_port else "start-first"
        deploy["update_config"] = {"parallelism": 1, "delay": "5s", "order": order,
                                   "failure_action": "rollback", "monitor": "30s"}
        deploy["rollback_config"] = {"parallelism": 1, "order": order}
    deploy["labels"] = {"com.docker.stack.fxstack": model.name}
    entry["deploy"] = deploy
    return entry


def haproxy_config(model: StackModel, opts: SwarmOptions) -> str:
    """HAProxy in front of the entry service: its tasks from Swarm's DNS (`tasks.<service>`,
    re-resolved every second), each health-checked; a request whose task went away is retried
    on another one. A short connect timeout: a task that has just gone (a lost node) leaves an
    address on the overlay that nothing answers, and each request sent there waits that long
    before its retry; inside one cluster a connect takes well under a millisecond. A new task
    gets requests as soon as DNS returns it, before HAProxy's first check: the entry service's
    Swarm health check keeps it out of DNS until it is warm (entry_probe). Server connections
    stay open between requests: with `option http-server-close` the API got `Connection: close`,
    closed after its early 413 while a 10 MB body was still arriving, and the reset discarded
    the 413 before HAProxy read it (log: SD--, status -1; the client saw no response)."""
    service, port, health = ENTRY[model.name]
    replicas = model.services[service].replicas
    slots = max(8, replicas * 4)  # room for the tasks of a rolling update
    return f"""# written by `fxstack deploy swarm {model.name}`: the entry address of the {model.name} stack
global
    log stdout format raw local0 info
    maxconn 4096
defaults
    mode http
    log global
    option httplog
    option redispatch
    retries 3
    retry-on conn-failure empty-response response-timeout 502 503 504
    timeout connect 300ms
    timeout client 60s
    timeout server 60s
    timeout check 2s
resolvers swarm
    nameserver docker 127.0.0.11:53
    resolve_retries 3
    timeout resolve 1s
    timeout retry 1s
    hold valid 1s
    hold obsolete 1s
    hold nx 1s
    accepted_payload_size 8192
frontend entry
    bind :{opts.lb_port}
    monitor-uri {LB_HEALTH}
    default_backend {service}
backend {service}
    balance roundrobin
    option httpchk GET {health}
    http-check expect status 200
    default-server check inter 1s fall 2 rise 1 resolvers swarm init-addr none
    server-template {service}- {slots} tasks.{service}:{port}
"""


def content_name(project: str, key: str, content: bytes | None) -> dict:
    """The `name:` of a secret or config: its content's hash in it. Swarm never changes a
    secret's or config's content (`docker stack deploy` stops with "only updates to Labels are
    allowed" when a file changed since the stack was deployed); under a new name it is a new
    object, and the services that mount it are updated to it. Nothing when the file is not
    there yet (a render without a deploy)."""
    if content is None:
        return {}
    import hashlib

    return {"name": f"{project}_{key}-{hashlib.sha256(content).hexdigest()[:12]}"}


def _read(path: Path) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def render(model: StackModel, opts: SwarmOptions) -> tuple[dict, dict[str, str]]:
    """(the stack file, {file name: content} of the configs written beside it)."""
    shared = model.shared_volumes()
    if shared and opts.nfs and opts.shared_path:
        raise FxError("--nfs and --shared-path both name storage for the shared volumes",
                      where=f"{model.name} stack", hint="give one of them")
    if shared and not (opts.nfs or opts.shared_path):
        users = {v: model.volumes[v] for v in shared}
        raise FxError(f"volumes shared by several services ({', '.join(f'{v}: {u}' for v, u in users.items())}) "
                      "need storage every node reaches", where=f"{model.name} stack",
                      hint="give a directory every node mounts from one shared filesystem with --shared-path DIR, "
                           "or an NFS export with --nfs SERVER:/EXPORT (one directory per volume under either)")
    if opts.shared_path and not opts.shared_path.startswith("/"):
        raise FxError(f"--shared-path {opts.shared_path!r} is not an absolute path",
                      hint="the same absolute path on every node, e.g. /mnt/shared/fxstack")
    unknown = sorted(set(publish_ports(opts)) - set(model.services))
    if unknown:
        raise FxError(f"--publish names {', '.join(unknown)}, not a service of the {model.name} stack",
                      hint=f"services: {', '.join(sorted(model.services))}")
    services = {name: service_entry(model, svc, opts) for name, svc in model.services.items()}
    if opts.lb_image is not None:
        clash = sorted(n for n, e in services.items() for p in e.get("ports", []) if p["published"] == opts.lb_port)
        if clash:
            raise FxError(f"{', '.join(clash)} would publish port {opts.lb_port}, the load balancer's on every node",
                          where=f"{model.name} stack", hint=f"publish it elsewhere: --publish {clash[0]}=PORT")
    side_files: dict[str, str] = {}
    configs: dict[str, dict] = {}
    for svc in model.services.values():
        for m in svc.mounts:
            if m.kind == "config":
                configs[_config_name(svc, m)] = {"file": m.source,
                                                 **content_name(model.project, _config_name(svc, m), _read(m.source))}
    if opts.lb_image is not None:
        if model.name not in ENTRY:
            raise FxError(f"the {model.name} stack names no entry service for the load balancer",
                          hint="deploy with --no-lb")
        side_files["haproxy.cfg"] = haproxy_config(model, opts)
        configs["lb-haproxy-cfg"] = {"file": "./haproxy.cfg", **content_name(
            model.project, "lb-haproxy-cfg", side_files["haproxy.cfg"].encode())}
        entry_networks = model.services[ENTRY[model.name][0]].networks
        services[LB_SERVICE] = {
            "image": opts.lb_image.ref,
            # the image's entrypoint is tini + haproxy (images/haproxy.toml)
            "command": ["-W", "-db", "-f", LB_CONFIG_TARGET],
            "configs": [{"source": "lb-haproxy-cfg", "target": LB_CONFIG_TARGET, "mode": 0o444}],
            "networks": [n for n in entry_networks if not model.networks.get(n)] or entry_networks,
            "read_only": True, "cap_drop": ["ALL"],
            "volumes": [{"type": "tmpfs", "target": "/tmp", "tmpfs": {"size": 16 << 20}}],
            "ports": [{"target": opts.lb_port, "published": opts.lb_port, "protocol": "tcp",
                       "mode": "host" if opts.endpoint_mode == "dnsrr" else "ingress"}],
            "healthcheck": {"test": ["CMD", "bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{opts.lb_port} && printf "
                                     f"'GET {LB_HEALTH} HTTP/1.0\\r\\n\\r\\n' >&3 && head -1 <&3 | grep -q ' 200 '"],
                            "interval": "5s", "timeout": "3s", "retries": 3, "start_period": "5s"},
            "deploy": {"mode": "global", "endpoint_mode": opts.endpoint_mode,
                       "resources": {"limits": {"memory": "128M", "pids": 64}},
                       "restart_policy": {"condition": "any", "delay": "2s"},
                       "update_config": {"parallelism": 1, "delay": "5s", "order": "stop-first",
                                         "failure_action": "rollback"},
                       "labels": {"com.docker.stack.fxstack": model.name}},
        }
    volumes: dict[str, dict] = {}
    for v in model.volumes:
        if v in shared and opts.shared_path:
            # the local driver binding a directory of the filesystem every node mounts: each
            # node's task sees the same files (the directory must exist: shared_dirs())
            volumes[v] = {"driver": "local", "driver_opts": {
                "type": "none", "o": "bind", "device": shared_dir(opts.shared_path, model.project, v)}}
        elif v in shared:
            server, _, export = (opts.nfs or "").partition(":")
            volumes[v] = {"driver": "local", "driver_opts": {
                "type": "nfs", "o": f"addr={server},rw,nfsvers=4", "device": f":{export.rstrip('/')}/{v}"}}
        else:
            volumes[v] = {}
    stack = {
        "version": "3.9",
        "services": services,
        "networks": {n: {"driver": "overlay", "internal": internal} for n, internal in sorted(model.networks.items())},
        "volumes": volumes,
        "secrets": {name: {"file": str(path), **content_name(model.project, name, _read(path))}
                    for name, path in sorted(model.secrets.items())
                    if any(name in s.secrets for s in model.services.values())},
    }
    if configs:
        stack["configs"] = configs
    return stack, side_files


def shared_dir(root: str, project: str, volume: str) -> str:
    return f"{root.rstrip('/')}/{project}/{volume}"


def shared_dirs(model: StackModel, root: str) -> dict[str, tuple[int, int]]:
    """{directory: (uid, gid)} a --shared-path deploy binds: one per shared volume, owned by the
    user of the images that mount it (a bind has no copy-up of the image's directory owner)."""
    out = {}
    for v in model.shared_volumes():
        users = {(model.services[s].image.uid, model.services[s].image.gid) for s in model.volumes[v]}
        if len(users) > 1:
            raise FxError(f"volume {v} is mounted by services of different users {sorted(users)}",
                          where=f"{model.name} stack", hint="give those images one user (their specs' user)")
        out[shared_dir(root, model.project, v)] = users.pop()
    return out


def make_shared_dirs(model: StackModel, root: str) -> list[str]:
    """Create the --shared-path directories (on the shared filesystem, so once for every node)."""
    made = []
    for path, (uid, gid) in shared_dirs(model, root).items():
        d = Path(path)
        if not d.is_dir():
            d.mkdir(parents=True)
            made.append(path)
        os.chown(d, uid, gid)
    return made


def label_stateful(model: StackModel, node: str, host: str | None = None) -> list[str]:
    """Pin every stateful service of the stack to `node` (the label its placement names)."""
    labels = [f"{_placement_label(model, s)}=true" for s in model.services.values() if s.kind == "stateful"]
    args = [a for label in labels for a in ("--label-add", label)]
    if args:
        docker("node", "update", *args, node, host=host)
    return labels


def write(stack: dict, side_files: dict[str, str], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    for name, text in side_files.items():
        atomic_write_bytes(out / name, text.encode())
    path = out / "stack.yml"
    atomic_write_bytes(path, yaml.safe_dump(stack, sort_keys=False, default_flow_style=False).encode())
    return path


def deploy(path: Path, project: str, host: str | None = None) -> str:
    return docker("stack", "deploy", "--prune", "--with-registry-auth", "-c", str(path), project,
                  host=host).stdout


def down(project: str, host: str | None = None) -> str:
    return docker("stack", "rm", project, host=host).stdout
