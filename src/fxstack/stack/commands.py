"""`fxstack up | down | status | logs | test`: registered into the CLI by fxstack.cli."""

from __future__ import annotations

import argparse


def _up(args: argparse.Namespace) -> int:
    from .lifecycle import up

    up(gpu=args.gpu, grafana=args.grafana, build=not args.no_build, timeout=args.timeout)
    return 0


def _down(args: argparse.Namespace) -> int:
    from .lifecycle import down

    down(volumes=args.volumes)
    return 0


def _status(args: argparse.Namespace) -> int:
    from .lifecycle import status

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
    p.set_defaults(func=_up)

    p = sub.add_parser("down", help="stop and remove the stack's containers (data volumes are kept)")
    p.add_argument("-v", "--volumes", action="store_true", help="also remove the named volumes: wipes all data")
    p.set_defaults(func=_down)

    p = sub.add_parser("status", help="each service: state, health, published URL")
    p.add_argument("--json", action="store_true", help="also print the table as JSON")
    p.set_defaults(func=_status)

    p = sub.add_parser("logs", help="a service's logs (all services without an argument)")
    p.add_argument("service", nargs="?")
    p.add_argument("-f", "--follow", action="store_true")
    p.add_argument("--tail", type=int, default=100)
    p.set_defaults(func=_logs)

    p = sub.add_parser("test", help="end-to-end run against the running stack: DAG -> MLflow -> /predict -> Prometheus")
    p.add_argument("--dag-timeout", type=float, default=900, help="seconds to wait for the DAG run (default 900)")
    p.set_defaults(func=_test)
