"""Load built images into the Docker daemon and record their refs for Compose."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..image.builder import Builder, BuiltImage
from ..image.store import atomic_write_bytes, file_lock, state_lock
from ..docker_api import client as docker_client
from ..errors import FxError
from ..reclaim import Freed
from ..envfile import read_env
from .engine import Engine
from .registry import LocalRegistry


def env_var_for(name: str) -> str:
    return name.upper().replace("-", "_") + "_IMAGE"


def write_images_env(state: Path, refs: dict[str, str]) -> Path:
    """`.fxstack/images.env`: the refs Compose substitutes; existing lines for other images kept."""
    path = state / "images.env"
    with file_lock(state / ".images.env.lock"):  # two loads at once: neither drops the other's lines
        lines = read_env(path)
        for name, ref in refs.items():
            lines[env_var_for(name)] = ref
        return _write_images_env(path, lines)


def forget_images_env(state: Path, names: list[str]) -> Path:
    """Drop the named images' lines from `.fxstack/images.env` (an image that is no longer part of
    this checkout: gc keeps whatever images.env names)."""
    path = state / "images.env"
    with file_lock(state / ".images.env.lock"):
        lines = read_env(path)
        for name in names:
            lines.pop(env_var_for(name), None)
        return _write_images_env(path, lines)


def _write_images_env(path: Path, lines: dict[str, str]) -> Path:
    text = "# written by fxstack build/load: image refs for docker compose\n"
    text += "".join(f"{k}={v}\n" for k, v in sorted(lines.items()))
    atomic_write_bytes(path, text.encode())
    return path


@dataclass(frozen=True)
class RegistryLoad:
    """What one registry load copied: bytes uploaded into the local registry (blobs it lacked)
    and the layers dockerd then downloaded from it (those it lacked)."""

    uploaded: int
    pulled_layers: int


def load_via_registry(builder: Builder, image: BuiltImage, engine: Engine, registry: LocalRegistry,
                      log: Callable[[str], None]) -> RegistryLoad:
    uploaded = registry.push(builder.store, image.name, image.tag, image.manifest_digest, log)
    remote = f"{registry.host}/{image.name}"
    pulled = 0
    try:
        # dockerd reports "Already exists" for a layer it has and "Pull complete" for each one
        # it had to fetch; errors can arrive inside the stream as well as in the status.
        for event in engine.pull(remote, image.tag):
            pulled += event.get("status") == "Pull complete"
    except FxError as exc:
        raise FxError(f"docker could not pull {remote}:{image.tag}: {exc.message}", where=image.name,
                      hint="retry with `fxstack load --method docker-load`") from exc
    engine.tag(f"{remote}:{image.tag}", image.name, image.tag)
    engine.untag(f"{remote}:{image.tag}")
    return RegistryLoad(uploaded, pulled)


def _add_member(tar: tarfile.TarFile, name: str, path: Path | None = None, data: bytes | None = None) -> int:
    """One member of a docker-archive, from a store file or from bytes; returns its size."""
    info = tarfile.TarInfo(name)
    if path is not None:
        info.size = path.stat().st_size
        with open(path, "rb") as f:
            tar.addfile(info, f)
    else:
        assert data is not None
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    return info.size


def load_delta(builder: Builder, image: BuiltImage, engine: Engine) -> int | None:
    """Load into dockerd only the layers above those it already holds for the image loaded
    last under this name (a code change: the app layer), as a docker-archive whose manifest
    names every layer but carries only the new ones; dockerd reads no file of a layer chain it
    has. Returns the bytes sent, or None when dockerd holds no earlier image of this name to
    build on (then the registry copies what is missing).

    After a code change this is one request of ~0.1 MB instead of a registry push and a pull,
    which together took most of `fxstack build --load`."""
    previous = read_env(builder.state / "images.env").get(env_var_for(image.name))
    if not previous or previous == image.ref:
        return None
    have = engine.layers_of(previous)
    ours = [l.digest for l in image.layers]
    shared = 0
    while have and shared < min(len(have), len(ours)) and have[shared] == ours[shared]:
        shared += 1
    if shared == 0:
        return None
    store = builder.store
    manifest = json.loads(store.path(image.manifest_digest).read_bytes())
    config = manifest["config"]["digest"]
    names = [f"{d.removeprefix('sha256:')}/layer.tar" for d in ours]
    sent = 0
    with tempfile.TemporaryFile(dir=store.root) as archive:
        with tarfile.open(fileobj=archive, mode="w") as tar:
            sent += _add_member(tar, "config.json", store.path(config))
            for name, digest in zip(names[shared:], ours[shared:]):
                sent += _add_member(tar, name, store.path(digest))
            sent += _add_member(tar, "manifest.json", data=json.dumps(
                [{"Config": "config.json", "RepoTags": [image.ref], "Layers": names}]).encode())
        size = archive.tell()
        archive.seek(0)
        engine.load(archive, size)
    return sent


def load_via_docker_load(builder: Builder, image: BuiltImage, log: Callable[[str], None]) -> int:
    """Stream a docker-archive of the whole image into `docker load` (the slow baseline)."""
    store = builder.store
    manifest = json.loads(store.path(image.manifest_digest).read_bytes())
    cfg = manifest["config"]["digest"].removeprefix("sha256:")
    layers = [l["digest"].removeprefix("sha256:") for l in manifest["layers"]]
    proc = subprocess.Popen(["docker", "load"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    assert proc.stdin is not None
    sent = 0
    with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
        sent += _add_member(tar, f"{cfg}.json", store.path("sha256:" + cfg))
        for layer in layers:
            sent += _add_member(tar, f"{layer}/layer.tar", store.path("sha256:" + layer))
        sent += _add_member(tar, "manifest.json", data=json.dumps(
            [{"Config": f"{cfg}.json", "RepoTags": [image.ref],
              "Layers": [f"{l}/layer.tar" for l in layers]}]).encode())
    proc.stdin.close()
    out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
    if proc.wait() != 0:
        raise FxError(f"docker load failed: {out[-500:]}", where=image.name)
    return sent


def load_images(builder: Builder, images: list[BuiltImage], *, method: str = "registry",
                log: Callable[[str], None] | None = None,
                registry: LocalRegistry | None = None) -> dict[str, str]:
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    engine = Engine()
    registry = registry or LocalRegistry(builder.state)
    refs = {}
    with state_lock(builder.state, exclusive=False):
        for image in images:
            refs[image.name] = _load_one(builder, image, engine, method, registry, log)
    write_images_env(builder.state, refs)
    return refs


def _load_one(builder: Builder, image: BuiltImage, engine: Engine, method: str, registry: LocalRegistry,
              log: Callable[[str], None]) -> str:
    # One load of an image at a time per state directory: two at once (two `fxstack load`, two
    # test processes) both pulled it from the local registry under one temporary name, and the
    # second's removal of that name found it gone. The second now finds the image in Docker.
    with file_lock(builder.state / ".locks" / f"load-{image.name}"):
        return _load_one_locked(builder, image, engine, method, registry, log)


def _load_one_locked(builder: Builder, image: BuiltImage, engine: Engine, method: str, registry: LocalRegistry,
                     log: Callable[[str], None]) -> str:
    started = time.monotonic()
    if engine.has_image(image.ref):
        log(f"{image.name}: {image.ref} already in Docker")
        # dockerd may have it from another checkout or state directory: the registry must
        # still hold its layers, or the next code change would upload them all.
        if method == "registry" and not registry.holds(builder.store, image.manifest_digest):
            registry.ensure_running()
            copied = registry.push(builder.store, image.name, image.tag, image.manifest_digest,
                                   log)
            log(f"{image.name}: {copied / 1e6:.1f} MB copied into the local registry "
                "(once), so later reloads send only changed layers")
        return image.ref
    if method == "registry":
        try:
            sent = load_delta(builder, image, engine)
        except FxError as exc:  # e.g. the earlier image was removed meanwhile: copy it all
            log(f"{image.name}: loading only the new layers failed ({exc.message}); through the registry")
            sent = None
        if sent is None:
            registry.ensure_running()
            sent = load_via_registry(builder, image, engine, registry, log).uploaded
    else:
        sent = load_via_docker_load(builder, image, log)
    log(f"{image.name}: loaded {image.ref} ({sent / 1e6:.1f} MB sent, "
        f"{time.monotonic() - started:.1f}s)")
    return image.ref


def prune_docker_images(names: set[str], keep_refs: set[str], dry_run: bool,
                        log: Callable[[str], None]):
    """Remove Docker's tags of our image names that no current image has; an image a
    container still uses stays (and is named)."""
    from docker.errors import APIError

    client = docker_client(timeout=600)
    freed = Freed("Docker images (old tags of ours)")
    before = client.df().get("LayersSize", 0)
    for image in client.images.list():
        for ref in image.tags:
            name = ref.rpartition(":")[0]
            if name not in names or ref in keep_refs:
                continue
            freed.items += 1
            if dry_run:
                continue
            try:
                client.images.remove(ref, noprune=False)
            except APIError as exc:
                freed.items -= 1
                freed.notes.append(f"kept {ref}: {exc.explanation or exc}")
    if not dry_run:
        freed.bytes = max(0, before - client.df().get("LayersSize", 0))
    return freed
