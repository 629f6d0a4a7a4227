"""`fxstack up | down | status | logs | test | dev`: registered into the CLI by fxstack.cli.

up, down, status and test take an optional stack name: none (the FX stack, as always) or
`bsopt` (compose/bsopt.yml, project bsopt); `dev bsopt` is bsopt's development mode.
"""

from __future__ import annotations

import argparse


def _bsopt(args: argparse.Namespace) -> bool:
    """Point this process at the stack named on the command line; True for bsopt."""
    from . import projects

    return projects.select(getattr(args, "stack", None)).name == "bsopt"


def _up(args: argparse.Namespace) -> int:
    from .lifecycle import up

    if _bsopt(args):
        from . import bsopt

        bsopt.up(build=not args.no_build, timeout=min(args.timeout, 600))
        return 0
    up(gpu=args.gpu, grafana=args.grafana, build=not args.no_build, timeout=args.timeout)
    return 0


def _down(args: argparse.Namespace) -> int:
    from .lifecycle import down

    _bsopt(args)
    down(volumes=args.volumes)
    return 0


def _status(args: argparse.Namespace) -> int:
    from .lifecycle import status

    _bsopt(args)
    rows = status()
    if args.json:
        import json

        print(json.dumps(rows, indent=2))
    return 0


def _logs(args: argparse.Namespace) -> int:
    from .lifecycle import logs

    return logs(args.service, follow=args.follow, tail=args.tail)


def _test(args: argparse.Namespace) -> int:
    from .e2e import run

    if _bsopt(args):
        from . import bsopt_e2e

        bsopt_e2e.run()
        return 0
    run(dag_timeout=args.dag_timeout)
    return 0


def register(sub) -> None:
    p = sub.add_parser("up", help="build what is missing, start the stack, wait until every service is healthy")
    p.add_argument("--gpu", action="store_true", help="add the FinGPT service (compose/docker-compose.gpu.yml)")
    p.add_argument("--grafana", action="store_true",
                   help="start Grafana too (profile monitoring-ui; its image comes from the Nix path)")
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

    p = sub.add_parser("logs", help="a service's logs (all services without an argument)")
    p.add_argument("service", nargs="?")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--tail", type=int, default=100)
    p.set_defaults(func=_logs)

    p = sub.add_parser("test", help="end-to-end run against the running stack: DAG -> MLflow -> /predict -> Prometheus")
    p.add_argument("--dag-timeout", type=float, default=900, help="seconds to wait for the DAG run (default 900)")
    _stack_arg(p)
    p.set_defaults(func=_test)

    p = sub.add_parser("dev", help="development mode: the stack's images with src/ mounted read-only, "
                                   "services reloading on a saved change (bsopt)")
    p.add_argument("stack", choices=["bsopt"], help="the stack (bsopt)")
    p.add_argument("--no-build", action="store_true", help="use .fxstack/images.env as it is")
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for health (default 600)")
    p.set_defaults(func=_dev)


def _dev(args: argparse.Namespace) -> int:
    from . import bsopt, projects

    projects.select(args.stack)
    bsopt.up(build=not args.no_build, timeout=args.timeout, dev=True)
    return 0


def _stack_arg(p) -> None:
    p.add_argument("stack", nargs="?", choices=["fx", "bsopt"], default=None,
                   help="which stack: none or fx (the FX pipeline), or bsopt (compose/bsopt.yml)")
