"""What the harness calls: make sure the stack's images are built and in Docker."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable

from ..errors import FxError
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


def sboms_later(builder: Builder, images: list[BuiltImage]) -> "SbomWriter | None":
    """Start writing the SBOMs the images lack (see SbomWriter); None when none is missing."""
    from ..image.sbom import attached

    missing = [im for im in images
               if not ((have := attached(builder.store, im.name, im.manifest_digest)) and builder.store.has(have))]
    return SbomWriter(builder, missing) if missing else None


class SbomWriter:
    """write_sboms in a process of its own at the lowest CPU priority, beside whatever comes
    next. After a code change the new image's SBOM costs about a second of CPU (parsing
    poetry.lock, reading the dpkg database out of the root filesystem layer, the CycloneDX
    serialiser) that `up` spent before Compose started; this way it takes only what the
    starting containers leave. A process, not a thread: a niced thread holding the GIL would
    stall the thread that watches the stack. wait() raises FxError if it failed."""

    def __init__(self, builder: Builder, images: list[BuiltImage]):
        pairs = [f"{im.name}={im.manifest_digest}" for im in images]
        env = dict(os.environ, FXSTACK_ROOT=str(builder.root), FXSTACK_STATE=str(builder.state))
        self.proc = subprocess.Popen([sys.executable, "-m", "fxstack.workflow.ensure", *pairs], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            os.setpriority(os.PRIO_PROCESS, self.proc.pid, 19)
        except OSError:  # it may already have finished
            pass

    def wait(self) -> None:
        _, err = self.proc.communicate()
        if self.proc.returncode != 0:
            raise FxError(f"writing the images' SBOMs failed (exit {self.proc.returncode}): {err[-2000:]}",
                          where="fxstack.workflow.ensure",
                          hint="`fxstack sbom IMAGE` writes one and says why it cannot")


def _sbom_main(pairs: list[str]) -> int:
    from ..image.sbom import attach
    from ..image.store import BlobStore, state_lock
    from ..lock.poetry_lock import PoetryLock
    from ..paths import repo_root, state_dir
    from ..specs import load_specs

    root, state = repo_root(), state_dir()
    specs = load_specs(root)
    lock = PoetryLock(root / "poetry.lock", root / "pyproject.toml")
    store = BlobStore(state / "oci")
    with state_lock(state, exclusive=False):  # `gc` must not sweep what is being written
        for pair in pairs:
            name, _, digest = pair.partition("=")
            attach(store, specs[name], lock, digest)
    return 0


if __name__ == "__main__":
    sys.exit(_sbom_main(sys.argv[1:]))
