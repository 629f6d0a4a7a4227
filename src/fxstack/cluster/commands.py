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
