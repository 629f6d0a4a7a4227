"""The cluster commands: `push`, `render k8s`, `deploy swarm`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..image.store import BlobStore, atomic_write_bytes, state_lock
from ..paths import state_dir


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _client(args: argparse.Namespace, host: str):
    from .registry_client import RegistryClient

    return RegistryClient(host, insecure=args.insecure, ca_file=Path(args.ca_file) if args.ca_file else None)


def _push(args: argparse.Namespace) -> int:
    from .push import push_images, results_json
    from .registry_client import Target

    target = Target.parse(args.target)
    store = BlobStore(state_dir() / "oci")
    with state_lock(state_dir(), exclusive=False):  # `gc` must not sweep blobs mid-upload
        results = push_images(target, _client(args, target.host), store, state_dir(), args.images, _log)
    for r in results:
        print(f"{r.ref.rsplit(':', 1)[0]}@{r.remote_digest}")
    sent = sum(r.bytes_sent for r in results)
    _log(f"pushed {len(results)} image(s) to {target.host}: {sent / 1e6:.1f} MB sent")
    if args.json:
        atomic_write_bytes(Path(args.json), results_json(results).encode())
    return 0


def _replicas(pairs: list[str]) -> dict[str, int]:
    from ..errors import FxError

    out = {}
    for pair in pairs:
        name, _, count = pair.partition("=")
        if not count.isdigit() or int(count) < 1:
            raise FxError(f"--replicas {pair!r} is not SERVICE=N", hint="e.g. --replicas fastapi=3")
        out[name] = int(count)
    return out


def _model(args: argparse.Namespace):
    """The stack model with every image resolved to its digest under REGISTRY/PREFIX."""
    from .images import store_resolver
    from .model import build_model
    from .registry_client import Target
    from .stackconfig import image_vars, stack_config

    target = Target.parse(args.registry)
    store = BlobStore(state_dir() / "oci")
    name, project, config = stack_config(args.stack, image_vars(), log=_log, env_file=_env_file(args))
    return build_model(name, project, config, store_resolver(store, target), _replicas(args.replicas)), target, store


def _env_file(args: argparse.Namespace) -> Path | None:
    return Path(args.env_file) if getattr(args, "env_file", None) else None


def _render_k8s(args: argparse.Namespace) -> int:
    from . import k8s

    model, _, _ = _model(args)
    files = k8s.render(model)
    if args.validate:
        k8s.validate(files)
    for path in k8s.write(files, Path(args.output)):
        print(path)
    _log(f"{model.name}: {sum(len(d) for d in files.values())} manifests for Kubernetes "
         f"{k8s.KUBERNETES_VERSION} in {args.output}; create the secrets with `kubectl create secret "
         f"generic {model.project}-secrets --from-file=<secrets dir>`")
    return 0


def _deploy_swarm(args: argparse.Namespace) -> int:
    from ..errors import FxError
    from ..stacks import registry
    from . import swarm
    from .images import image_info
    from ..image.sbom import image_manifest

    host = args.host
    if args.down:
        project = registry.get(args.stack).project
        _log(swarm.down(project, host).strip() or f"stack {project} removed")
        return 0
    if args.status:
        project = registry.get(args.stack).project
        lines = swarm.status_lines(project, host)
        if lines is None:
            raise FxError(f"no Swarm stack {project} on {host or 'this Docker'}",
                          hint="deploy it first (`deploy swarm`), or name a manager with --host")
        print("\n".join(lines))
        return 0
    if not args.registry:
        raise FxError("deploy swarm needs --registry REGISTRY/PREFIX (where `fxstack push` put the images)",
                      hint="push first: `fxstack push REGISTRY/PREFIX`, then deploy with the same REGISTRY/PREFIX")
    from .stackconfig import cluster_target, image_vars, write_secrets

    if not args.render_only:
        # the secret files `docker stack deploy` reads, from the stack's env file (made if new)
        write_secrets(cluster_target(args.stack, image_vars(), env_file=_env_file(args)), _log)
    model, target, store = _model(args)
    mode = args.endpoint_mode
    if mode == "auto":
        mode = "vip" if swarm.ipvs_available() else "dnsrr"
        _log(f"endpoint mode {mode} ({'IPVS present' if mode == 'vip' else 'no IPVS in this kernel'})")
    lb = None if args.no_lb else image_info(store, target, "haproxy", image_manifest(store, "haproxy"))
    opts = swarm.SwarmOptions(endpoint_mode=mode, lb_image=lb, publish=tuple(args.publish), nfs=args.nfs,
                              shared_path=args.shared_path)
    stack, side_files = swarm.render(model, opts)
    out = Path(args.output or state_dir() / "swarm" / model.name)
    path = swarm.write(stack, side_files, out)
    print(path)
    if args.render_only:
        return 0
    if args.shared_path:
        try:
            for made in swarm.make_shared_dirs(model, args.shared_path):
                _log(f"made {made} on the shared filesystem")
        except OSError as exc:
            raise FxError(f"cannot make the shared volumes' directories under {args.shared_path}: {exc}",
                          where="--shared-path", hint="run where the shared filesystem is mounted, as a user "
                          "that may create directories there and give them to the services' users") from None
    if args.stateful_node:
        labels = swarm.label_stateful(model, args.stateful_node, host)
        _log(f"node {args.stateful_node}: {', '.join(labels) or 'no stateful service'}")
    _log(swarm.deploy(path, model.project, host).strip())
    return 0


def _registry_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ca-file", metavar="PEM", help="trust this CA for the registry's TLS certificate")
    p.add_argument("--insecure", action="store_true",
                   help="talk plain HTTP to the registry (test registries only)")


def register(sub) -> None:
    p = sub.add_parser("push", help="copy images (and their SBOMs) by digest to an OCI registry, "
                                    "sending only the blobs it lacks")
    p.add_argument("target", metavar="REGISTRY/PREFIX", help="e.g. registry.example.com:5000/fx")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="image names (default: every built image)")
    p.add_argument("--json", metavar="FILE", help="also write the results (digests, bytes, seconds) as JSON")
    _registry_args(p)
    p.set_defaults(func=_push)

    p = sub.add_parser("render", help="write the stack for another engine: `render k8s [STACK] -o DIR`")
    engines = p.add_subparsers(dest="engine", required=True)
    k = engines.add_parser("k8s", help="plain Kubernetes manifests (Deployments, StatefulSets, Jobs, Services)")
    k.add_argument("stack", nargs="?", help="fx (default) or bsopt")
    k.add_argument("-o", "--output", required=True, metavar="DIR")
    k.add_argument("--registry", required=True, metavar="REGISTRY/PREFIX",
                   help="where the images are (`fxstack push` to it first); images are named by digest")
    k.add_argument("--replicas", action="append", default=[], metavar="SERVICE=N")
    k.add_argument("--no-validate", dest="validate", action="store_false",
                   help="skip the check against the Kubernetes schemas (kubernetes-validate)")
    k.set_defaults(func=_render_k8s)

    p = sub.add_parser("deploy", help="run the stack on a cluster engine: `deploy swarm [STACK]`")
    engines = p.add_subparsers(dest="engine", required=True)
    s = engines.add_parser("swarm", help="render a `docker stack deploy` file and deploy it (--down removes it)")
    s.add_argument("stack", nargs="?", help="fx (default) or bsopt")
    s.add_argument("--registry", metavar="REGISTRY/PREFIX", help="where `fxstack push` put the images")
    s.add_argument("--down", action="store_true", help="remove the stack (its volumes stay on the nodes)")
    s.add_argument("--status", action="store_true", help="the stack's running tasks, per node")
    s.add_argument("--host", metavar="DOCKER_HOST", help="a Swarm manager's socket (default: the local one)")
    s.add_argument("--endpoint-mode", choices=("auto", "dnsrr", "vip"), default="auto",
                   help="vip + routing mesh needs IPVS in the kernel; auto looks for it")
    s.add_argument("--nfs", metavar="SERVER:/EXPORT", help="storage for volumes several services share")
    s.add_argument("--shared-path", metavar="DIR",
                   help="storage for volumes several services share: a directory every node mounts from one "
                        "shared filesystem (NFS, CephFS, ...); each volume binds DIR/<project>/<volume>")
    s.add_argument("--stateful-node", metavar="NODE",
                   help="label NODE for every stateful service (Postgres, Redis, ...) before deploying")
    s.add_argument("--env-file", metavar="FILE",
                   help="the stack's settings and secrets (default: compose/ env file; made if missing)")
    s.add_argument("--publish", action="append", default=[], metavar="SERVICE[=PORT]",
                   help="also publish this service's Compose port on the nodes, or on PORT "
                        "(default: only the load balancer)")
    s.add_argument("--no-lb", action="store_true", help="no HAProxy entry service")
    s.add_argument("--replicas", action="append", default=[], metavar="SERVICE=N")
    s.add_argument("-o", "--output", metavar="DIR", help="where the stack file goes (default .fxstack/swarm/STACK)")
    s.add_argument("--render-only", action="store_true", help="write the file, do not deploy")
    s.set_defaults(func=_deploy_swarm)
