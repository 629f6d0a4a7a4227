"""The `fxstack` command: build, load, and drive the stack."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import FxError


def _cmd_specs(args: argparse.Namespace) -> int:
    import json

    from .paths import repo_root
    from .specs import load_specs, specs_json

    specs = load_specs(repo_root())
    if args.json:
        print(json.dumps(specs_json(specs), indent=2, sort_keys=True))
    else:
        for spec in specs.values():
            where = "portable + nix" if spec.portable else "nix only"
            print(f"{spec.name:24} {spec.kind:8} {where:15} {spec.description}")
    return 0


def _cmd_lock_export(args: argparse.Namespace) -> int:
    from .lock.poetry_lock import PoetryLock, export_requirements
    from .paths import repo_root

    root = repo_root()
    text = export_requirements(PoetryLock(root / "poetry.lock", root / "pyproject.toml"), args.groups,
                               tuple(args.exclude))
    if args.output:
        from .image.store import atomic_write_bytes

        atomic_write_bytes(Path(args.output), text.encode())
    else:
        print(text, end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fxstack", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("specs", help="validate images/*.toml and list the images")
    p.add_argument("--json", action="store_true", help="print the resolved specs as JSON")
    p.set_defaults(func=_cmd_specs)
    p = sub.add_parser("lock-export", help="print pip requirements with hashes for Poetry groups")
    p.add_argument("groups", nargs="+", help="Poetry groups (`main` is the harness's own)")
    p.add_argument("-o", "--output", help="write to this file (atomically)")
    p.add_argument("--exclude", action="append", default=[], metavar="NAME",
                   help="leave out a package (a trailing * matches a prefix)")
    p.set_defaults(func=_cmd_lock_export)
    # Each part registers its own subcommands, so this file stays a table of contents.
    for module in ("fxstack.workflow.commands", "fxstack.stack.commands", "fxstack.workflow.gc",
                   "fxstack.workflow.sbom", "fxstack.cluster.commands"):
        __import__(module, fromlist=["register"]).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except FxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
