"""A service's image as a cluster pulls it: the registry ref by digest, and the numeric user it
runs as (Kubernetes' runAsNonRoot can only check a number; Swarm secrets are owned by one)."""

from __future__ import annotations

import json
import tarfile
from typing import Callable

from ..errors import FxError
from ..image import oci
from ..image.sbom import image_manifest
from ..image.store import BlobStore
from .model import ImageInfo, image_name
from .registry_client import Target


def _passwd_entry(store: BlobStore, manifest: dict, user: str) -> tuple[int, int] | None:
    """uid/gid of `user` from the image's /etc/passwd (the last layer that has one wins)."""
    found = None
    for layer in manifest["layers"]:
        with tarfile.open(store.path(layer["digest"]), mode="r|*") as tar:
            for member in tar:
                if member.name.lstrip("./") == "etc/passwd" and member.isfile():
                    fh = tar.extractfile(member)
                    for line in (fh.read().decode("utf-8", "replace") if fh else "").splitlines():
                        parts = line.split(":")
                        if len(parts) >= 4 and parts[0] == user:
                            found = (int(parts[2]), int(parts[3]))
    return found


def image_info(store: BlobStore, target: Target, name: str, digest: str) -> ImageInfo:
    manifest = oci.read_manifest(store, digest)
    config = json.loads(store.path(manifest["config"]["digest"]).read_bytes())["config"]
    user, _, group = (config.get("User") or "0").partition(":")
    if user.isdigit():
        uid = int(user)
        gid = int(group) if group.isdigit() else uid
    else:
        entry = _passwd_entry(store, manifest, user)
        if entry is None:
            raise FxError(f"image {name} runs as user {user!r}, which its /etc/passwd does not list",
                          where=name, hint=f"fix the user in images/{name}.toml and rebuild")
        uid, gid = entry
    ports = tuple(sorted(int(p.split("/")[0]) for p in (config.get("ExposedPorts") or {})
                         if p.endswith("/tcp")))
    return ImageInfo(target.ref(name, digest), uid, gid, ports)


def store_resolver(store: BlobStore, target: Target) -> Callable[[str], ImageInfo]:
    """ref in images.env (`name:content-tag`) -> ImageInfo, checked against the OCI store: the
    tag must be the current build's, so the digest rendered is the image Compose runs."""
    cache: dict[str, ImageInfo] = {}

    def resolve(ref: str) -> ImageInfo:
        if ref in cache:
            return cache[ref]
        name = image_name(ref)
        if ref.startswith("fxstack-placeholder"):
            raise FxError("an image of the stack is not built (its *_IMAGE setting is unset)",
                          hint="run `fxstack build` first (it writes .fxstack/images.env)")
        digest = image_manifest(store, name)
        tag = ref.split("@", 1)[0].rsplit(":", 1)[-1]
        if ":" in ref and tag != oci.content_tag(digest):
            raise FxError(f"images.env names {ref}, but the OCI store's {name} is {oci.content_tag(digest)}",
                          where=name, hint="run `fxstack build` so that both name the same build")
        cache[ref] = image_info(store, target, name, digest)
        return cache[ref]

    return resolve
