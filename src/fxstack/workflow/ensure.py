"""What the harness calls: make sure the stack's images are built and in Docker."""

from __future__ import annotations

import sys
from typing import Callable

from ..image.builder import Builder
from ..image.sbom import attach
from ..load.loader import load_images


def ensure_images(names: list[str] | None = None,
                  progress: Callable[[str], None] | None = None,
                  *, method: str = "registry") -> dict[str, str]:
    """Build what is missing (cached layers make the rest free), load what Docker lacks.

    Returns {image name: docker ref} and leaves `.fxstack/images.env` for Compose.
    """
    log = progress or (lambda m: print(m, file=sys.stderr, flush=True))
    builder = Builder(log=log)
    images = builder.build(names)
    for image in images:  # each image's SBOM next to it in the OCI layout (cached by manifest)
        attach(builder.store, builder.specs[image.name], builder.lock, image.manifest_digest)
    return load_images(builder, images, method=method, log=log)
