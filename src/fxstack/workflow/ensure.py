"""What the harness calls: make sure the stack's images are built and in Docker."""

from __future__ import annotations

import sys
from typing import Callable

from ..image.builder import Builder, BuiltImage
from ..load.loader import load_images


def ensure_images(names: list[str] | None = None,
                  progress: Callable[[str], None] | None = None,
                  *, method: str = "registry") -> dict[str, str]:
    """Build what is missing (cached layers make the rest free), load what Docker lacks, and
    write each image's SBOM next to it in the OCI layout (cached by manifest).

    Returns {image name: docker ref} and leaves `.fxstack/images.env` for Compose.
    """
    builder, images, refs = build_and_load(names, progress, method=method)
    write_sboms(builder, images)
    return refs


def build_and_load(names: list[str] | None = None, progress: Callable[[str], None] | None = None,
                   *, method: str = "registry") -> tuple[Builder, list[BuiltImage], dict[str, str]]:
    """ensure_images without the SBOMs: the builder, the images and {name: docker ref}."""
    log = progress or (lambda m: print(m, file=sys.stderr, flush=True))
    builder = Builder(log=log)
    images = builder.build(names)
    return builder, images, load_images(builder, images, method=method, log=log)


def write_sboms(builder: Builder, images: list[BuiltImage]) -> None:
    from ..image.sbom import attach

    for image in images:
        attach(builder.store, builder.specs[image.name], builder.lock, image.manifest_digest)


def missing_sboms(builder: Builder, images: list[BuiltImage]) -> list[BuiltImage]:
    """The images whose SBOM is not written yet (a new build: after a code change, one)."""
    from ..image.sbom import attached

    return [im for im in images
            if not ((have := attached(builder.store, im.name, im.manifest_digest)) and builder.store.has(have))]
