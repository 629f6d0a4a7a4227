"""`fxstack up | down | status | logs | test | dev`: registered into the CLI by fxstack.cli.

Each takes an optional stack name (fxstack.stacks.registry; none is the FX stack). This is the
edge where the user's environment is read, once: FXSTACK_PROJECT, FXSTACK_ENV_FILE,
FXSTACK_SECRETS_DIR and FXSTACK_COMPOSE_FILES (os.pathsep-separated) override the stack's
defaults, and FXSTACK_CLI (exported by ./fx) is the command the hints name. Below this module
everything is a parameter of a Target.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

STACK_NAMES = ("fx", "bsopt")  # the choices argparse shows; registry.STACKS is checked against it by a test


def target_from_args(args: argparse.Namespace, variants: tuple[str, ...] = ()):
    from ..stacks import registry
    from .target import Target

    env = os.environ
    return Target(
        registry.get(getattr(args, "stack", None)),
        variants=variants,
        project=env.get("FXSTACK_PROJECT") or None,
        env_file=Path(env["FXSTACK_ENV_FILE"]) if env.get("FXSTACK_ENV_FILE") else None,
        secrets_dir=Path(env["FXSTACK_SECRETS_DIR"]) if env.get("FXSTACK_SECRETS_DIR") else None,
        extra_files=tuple(Path(p) for p in env.get("FXSTACK_COMPOSE_FILES", "").split(os.pathsep) if p),
        cli=env.get("FXSTACK_CLI") or "fxstack",
    )


def _up(args: argparse.Namespace) -> int:
    from .lifecycle import up

    variants = tuple(name for name, on in (("gpu", args.gpu), ("grafana", args.grafana)) if on)
    up(target_from_args(args, variants), build=not args.no_build, timeout=args.timeout)
    return 0


def _dev(args: argparse.Namespace) -> int:
    from .lifecycle import up

    up(target_from_args(args, ("dev",)), build=not args.no_build, timeout=args.timeout)
    return 0


def _down(args: argparse.Namespace) -> int:
    from .lifecycle import down

    down(target_from_args(args), volumes=args.volumes)
    return 0


def _status(args: argparse.Namespace) -> int:
    from .lifecycle import status

    from .swarm_tasks import status_lines

    target = target_from_args(args)
    rows = status(target)
    swarm = status_lines(target.project_name)  # the same stack deployed on a Swarm this Docker manages
    if swarm:
        print("\n".join(swarm))
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
    return 0


def stack_and_service(first: str | None, second: str | None) -> tuple[str | None, str | None]:
    """`logs [STACK] [SERVICE]`: a first word that names a stack is the stack, else the service."""
    if first is None or first in STACK_NAMES:
        return first, second
    if second is not None:
        from ..errors import FxError

        raise FxError(f"no stack named {first!r}", hint=f"stacks: {', '.join(STACK_NAMES)}")
    return None, first


def _logs(args: argparse.Namespace) -> int:
    from .lifecycle import logs

    args.stack, args.service = stack_and_service(args.stack, args.service)
    return logs(target_from_args(args), args.service, follow=args.follow, tail=args.tail)


def _test(args: argparse.Namespace) -> int:
    from .lifecycle import test

    test(target_from_args(args), timeout=args.timeout)
    return 0


def register(sub) -> None:
    p = sub.add_parser("up", help="build what is missing, start the stack, wait until every service is healthy")
    p.add_argument("--gpu", action="store_true", help="fx: add the FinGPT service (compose/docker-compose.gpu.yml)")
    p.add_argument("--grafana", action="store_true",
                   help="fx: start Grafana too (profile monitoring-ui; its image comes from the Nix path)")
    p.add_argument("--no-build", action="store_true",
                   help="do not run the image builder: use .fxstack/images.env as it is")
    p.add_argument("--timeout", type=float, default=900, help="seconds to wait for health (default 900)")
    _stack_arg(p)
    p.set_defaults(func=_up)

    p = sub.add_parser("down", help="stop and remove the stack's containers (data volumes are kept)")
    p.add_argument("-v", "--volumes", action="store_true", help="also remove the named volumes: wipes all data")
    _stack_arg(p)
    p.set_defaults(func=_down)

    p = sub.add_parser("status", help="each service: state, health, published URL")
    p.add_argument("--json", action="store_true", help="also print the table as JSON")
    _stack_arg(p)
    p.set_defaults(func=_status)

    p = sub.add_parser("logs", help="a service's logs (all services without one): logs [STACK] [SERVICE]")
    p.add_argument("stack", nargs="?", help="fx (default) or bsopt")
    p.add_argument("service", nargs="?")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--tail", type=int, default=100)
    p.set_defaults(func=_logs)

    p = sub.add_parser("test", help="the stack's end-to-end run against the running stack "
                                    "(fx: DAG -> MLflow -> /predict -> Prometheus)")
    p.add_argument("--timeout", "--dag-timeout", dest="timeout", type=float, default=900,
                   help="seconds the run may wait for a step (fx: the DAG run; default 900)")
    _stack_arg(p)
    p.set_defaults(func=_test)

    p = sub.add_parser("dev", help="development mode: the stack's images with src/ mounted read-only, "
                                   "services reloading on a saved change (bsopt)")
    p.add_argument("stack", choices=["bsopt"], help="the stack (bsopt)")
    p.add_argument("--no-build", action="store_true", help="use .fxstack/images.env as it is")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for health (default 600)")
    p.set_defaults(func=_dev)


def _stack_arg(p) -> None:
    p.add_argument("stack", nargs="?", choices=STACK_NAMES, default=None,
                   help="which stack: none or fx (the FX pipeline), or bsopt (compose/bsopt.yml)")
