"""OCI image config, manifest and layout index, serialised canonically."""

from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from ..specs import ImageSpec
from .settings import LAYER_MEDIA_TYPE, created
from .store import BlobStore, atomic_write_bytes, canonical_json, file_lock

CONFIG_MEDIA_TYPE = "application/vnd.oci.image.config.v1+json"
MANIFEST_MEDIA_TYPE = "application/vnd.oci.image.manifest.v1+json"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int
    comment: str


def image_config(spec: ImageSpec, layers: list[Layer]) -> dict:
    env = {"PATH": DEFAULT_PATH, **spec.env}
    if spec.kind == "python" and spec.uid is not None:
        env.setdefault("HOME", f"/home/{spec.user}")
    user = f"{spec.uid}:{spec.uid}" if spec.uid is not None else spec.user
    config = {
        "User": user,
        "Env": [f"{k}={v}" for k, v in sorted(env.items())],
        "Entrypoint": list(spec.entrypoint) or None,
        "Cmd": list(spec.cmd) or None,
        "WorkingDir": spec.workdir,
        "ExposedPorts": {f"{p}/tcp": {} for p in spec.ports} or None,
        "Volumes": {v: {} for v in spec.volumes} or None,
        "Labels": dict(sorted(spec.labels.items())) or None,
    }
    return {
        "architecture": "amd64",
        "os": "linux",
        "created": created(),
        "config": {k: v for k, v in config.items() if v is not None},
        "rootfs": {"type": "layers", "diff_ids": [l.digest for l in layers]},
        "history": [{"created": created(), "created_by": f"fxstack: {l.comment}"} for l in layers],
    }


def write_image(store: BlobStore, spec: ImageSpec, layers: list[Layer]) -> tuple[str, int]:
    """Store config + manifest; return (manifest digest, manifest size)."""
    cfg_digest, cfg_size = store.put_bytes(canonical_json(image_config(spec, layers)))
    manifest = {
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {"mediaType": CONFIG_MEDIA_TYPE, "digest": cfg_digest, "size": cfg_size},
        "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": l.digest, "size": l.size} for l in layers],
        "annotations": {"org.opencontainers.image.title": spec.name},
    }
    return store.put_bytes(canonical_json(manifest))


def read_manifest(store: BlobStore, digest: str) -> dict:
    return json.loads(store.path(digest).read_bytes())


def read_index(store: BlobStore) -> dict[str, dict]:
    """index.json's entries by ref name (an entry without one by its digest); {} before the
    first build."""
    try:
        entries = json.loads((store.root / "index.json").read_text())["manifests"]
    except FileNotFoundError:
        return {}
    return {m.get("annotations", {}).get("org.opencontainers.image.ref.name", m["digest"]): m for m in entries}


@contextmanager
def _index_lock(store: BlobStore) -> Iterator[None]:
    """Builds, `fxstack sbom` and the harness write index.json from several processes at once
    (state_lock lets them share the state directory): each read-modify-write holds this lock,
    so none writes back an index read before another's entry landed."""
    with file_lock(store.root / ".index.lock"):
        yield


def edit_index(store: BlobStore, change: Callable[[dict[str, dict]], None]) -> None:
    """Read index.json, let `change` edit its entries (by ref name), write it back atomically,
    all under the index lock."""
    with _index_lock(store):
        entries = read_index(store)
        change(entries)
        atomic_write_bytes(store.root / "oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
        index = {"schemaVersion": 2, "manifests": [entries[k] for k in sorted(entries)]}
        atomic_write_bytes(store.root / "index.json", json.dumps(index, indent=1).encode())


def update_index(store: BlobStore, refs: dict[str, tuple[str, int]]) -> None:
    """The OCI layout's index.json: one entry per image name, pointing at its manifest."""
    def change(entries: dict[str, dict]) -> None:
        for name, (digest, size) in refs.items():
            entries[name] = {"mediaType": MANIFEST_MEDIA_TYPE, "digest": digest, "size": size,
                             "annotations": {"org.opencontainers.image.ref.name": name}}
    edit_index(store, change)


def content_tag(manifest_digest: str) -> str:
    return manifest_digest.removeprefix("sha256:")[:12]
