"""`fxstack sbom IMAGE`: the image's CycloneDX SBOM, from the OCI layout (written there if missing)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import FxError
from ..image.store import BlobStore, atomic_write_bytes, state_lock
from ..paths import repo_root, state_dir
from ..specs import load_specs


def _cmd_sbom(args: argparse.Namespace) -> int:
    # Imported here, not at the top: every `fxstack` command registers this one, and the SBOM
    # code pulls in the lock parser and `packaging` (about 20 ms a process), which a
    # `fxstack build --load` after a code change does not otherwise import.
    from ..image.sbom import attach, image_manifest, sbom_path, validate
    from ..lock.poetry_lock import PoetryLock

    root = repo_root()
    specs = load_specs(root)
    spec = specs.get(args.image)
    if spec is None:
        raise FxError(f"no image named {args.image!r}", where="images/", hint=f"images: {', '.join(specs)}")
    store = BlobStore(state_dir() / "oci")
    lock = PoetryLock(root / "poetry.lock", root / "pyproject.toml")
    with state_lock(state_dir(), exclusive=False):  # `gc` must not sweep what we are writing
        digest = attach(store, spec, lock, image_manifest(store, spec.name))
    document = sbom_path(store, digest).read_bytes()
    if args.validate:
        validate(document)
        print(f"{spec.name}: valid CycloneDX 1.6 ({digest})", file=sys.stderr)
    if args.output:
        atomic_write_bytes(Path(args.output), document)
    else:
        sys.stdout.write(document.decode() + "\n")
    return 0


def register(sub) -> None:
    p = sub.add_parser("sbom", help="print an image's CycloneDX SBOM (Python + Debian packages), "
                                    "stored next to it in the OCI layout")
    p.add_argument("image", help="image name, e.g. fx-fastapi (built by `fxstack build`)")
    p.add_argument("-o", "--output", help="write to this file instead of stdout")
    p.add_argument("--validate", action="store_true", help="check it with CycloneDX's JSON schema first")
    p.set_defaults(func=_cmd_sbom)
