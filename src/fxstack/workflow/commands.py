"""`fxstack build` and `fxstack load`."""

from __future__ import annotations

import argparse

from ..image.builder import Builder
from ..load.loader import load_images


def _print_summary(images) -> None:
    print(f"{'image':24} {'ref':38} {'layers':>6} {'size MB':>9} {'cached':>6} {'secs':>6}")
    for im in images:
        print(f"{im.name:24} {im.ref:38} {len(im.layers):6d} {im.size / 1e6:9.1f}"
              f" {im.cached_layers:6d} {im.seconds:6.1f}")


def _cmd_build(args: argparse.Namespace) -> int:
    builder = Builder(update_debian_lock=args.update_debian_lock, compile_bytecode=not args.no_bytecode,
                      **({"frozen": True} if args.frozen else {}))
    images = builder.build(args.images or None, include_gpu=args.gpu)
    if args.load:
        load_images(builder, images)
    _print_summary(images)
    return 0


def _cmd_load(args: argparse.Namespace) -> int:
    builder = Builder()
    images = builder.build(args.images or None, include_gpu=args.gpu)
    load_images(builder, images, method=args.method)
    _print_summary(images)
    return 0


def register(sub) -> None:
    p = sub.add_parser("build", help="build images from images/*.toml and poetry.lock (no Dockerfiles)")
    p.add_argument("images", nargs="*", help="image names (default: every portable CPU image)")
    p.add_argument("--gpu", action="store_true", help="include GPU images (fx-fingpt) in the default set")
    p.add_argument("--load", action="store_true", help="load the built images into Docker")
    p.add_argument("--update-debian-lock", action="store_true",
                   help="resolve Debian packages afresh and rewrite images/debian.lock")
    p.add_argument("--frozen", action="store_true",
                   help="fail, rather than re-resolve and rewrite images/debian.lock, when a locked Debian "
                        "package can no longer be installed (also FXSTACK_FROZEN=1)")
    p.add_argument("--no-bytecode", action="store_true", help="ship no .pyc files")
    p.set_defaults(func=_cmd_build)
    p = sub.add_parser("load", help="build what is missing and load images into Docker (only missing layers)")
    p.add_argument("images", nargs="*")
    p.add_argument("--gpu", action="store_true")
    p.add_argument("--method", choices=("registry", "docker-load"), default="registry",
                   help="registry: copy only missing layers through a registry on 127.0.0.1 (default);"
                        " docker-load: stream the whole image through `docker load`")
    p.set_defaults(func=_cmd_load)
