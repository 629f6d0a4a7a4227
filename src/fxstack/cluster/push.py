"""`fxstack push REGISTRY/PREFIX [IMAGE...]`: images and their SBOM referrers from the builder's
OCI store to any OCI distribution registry, by digest.

Only what the registry lacks travels: every blob is asked for first (HEAD), a blob already in
another repository of the same registry is mounted (no bytes), and the rest is uploaded. The
manifest goes up byte for byte, so the registry's digest is the local one; the push checks that.
A push that failed half way leaves whole blobs behind (a registry commits a blob only once its
digest checks), so running it again sends only the rest.

The SBOM is an OCI 1.1 referrer (its manifest's `subject` is the image). A registry that keeps
the referrers API answers its manifest PUT with `OCI-Subject`; for one that does not (Docker's
distribution 2.x), the spec's fallback is kept: an image index tagged `sha256-<image hex>` that
lists the referrers.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import FxError
from ..image import oci, sbom
from ..image.store import BlobStore, atomic_write_bytes
from .registry_client import RegistryClient, Target

INDEX_MEDIA_TYPE = "application/vnd.oci.image.index.v1+json"


@dataclass
class PushResult:
    image: str
    ref: str                  # host/repo:tag
    local_digest: str
    remote_digest: str
    bytes_sent: int = 0
    blobs_sent: int = 0
    blobs_present: int = 0
    blobs_mounted: int = 0
    sbom_digest: str | None = None
    seconds: float = 0.0


@dataclass
class BlobRecord:
    """Which repository of a registry holds which blob: a later push mounts from it. Kept per
    registry under the state directory; a stale entry only costs a failed mount (then upload)."""

    path: Path
    repos: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, state: Path, host: str) -> "BlobRecord":
        path = state / "push" / f"{host.replace(':', '_')}.json"
        try:
            return cls(path, json.loads(path.read_text()))
        except (FileNotFoundError, ValueError):
            return cls(path, {})

    def save(self) -> None:
        atomic_write_bytes(self.path, json.dumps(self.repos, sort_keys=True).encode())


def image_names(store: BlobStore) -> list[str]:
    """The images the OCI layout's index names (SBOM entries excluded)."""
    try:
        entries = json.loads((store.root / "index.json").read_text())["manifests"]
    except FileNotFoundError:
        return []
    names = [m.get("annotations", {}).get("org.opencontainers.image.ref.name", "") for m in entries]
    return sorted(n for n in names if n and not n.endswith(".sbom"))


def sbom_manifest(store: BlobStore, image: str, manifest_digest: str) -> str | None:
    """The referrer manifest of the image's SBOM, when the layout has one for this build."""
    try:
        entries = json.loads((store.root / "index.json").read_text())["manifests"]
    except FileNotFoundError:
        return None
    for m in entries:
        ann = m.get("annotations", {})
        if (ann.get("org.opencontainers.image.ref.name") == sbom.sbom_ref_name(image)
                and ann.get("fxstack.sbom.subject") == manifest_digest):
            return m["digest"]
    return None


class Pusher:
    def __init__(self, client: RegistryClient, target: Target, store: BlobStore, state: Path,
                 log: Callable[[str], None], on_upload: Callable[[str, int], None] | None = None):
        self.client, self.target, self.store, self.log = client, target, store, log
        self.on_upload = on_upload or (lambda digest, size: None)
        self.record = BlobRecord.load(state, client.host)

    def _push_blob(self, repo: str, digest: str, result: PushResult) -> None:
        c = self.client
        if c.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo=repo, ok=(404,)).status_code == 200:
            result.blobs_present += 1
            self.record.repos.setdefault(digest, repo)
            return
        source = self.record.repos.get(digest)
        if source and source != repo:
            r = c.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo,
                          params={"mount": digest, "from": source})
            if r.status_code == 201:
                result.blobs_mounted += 1
                return
            # 202: the registry would not mount (e.g. no read right on `source`) and opened an
            # upload session instead; upload into it
        else:
            r = c.request("POST", f"/v2/{repo}/blobs/uploads/", repo=repo)
        location = r.headers.get("Location")
        if not location:
            raise FxError(f"{c.host} opened an upload without a Location header", where=f"{c.host}/{repo}",
                          hint="this is not an OCI distribution registry, or a proxy strips headers")
        if location.startswith("/"):
            location = c.base + location
        path = self.store.path(digest)
        size = path.stat().st_size
        with open(path, "rb") as f:
            c.request("PUT", location, repo=repo, params={"digest": digest}, data=f, timeout=3600,
                      headers={"Content-Type": "application/octet-stream", "Content-Length": str(size)})
        result.bytes_sent += size
        result.blobs_sent += 1
        self.record.repos[digest] = repo
        self.record.save()  # a failed push later still knows this blob is there to mount
        self.on_upload(digest, size)

    def _put_manifest(self, repo: str, reference: str, body: bytes, media_type: str):
        return self.client.request("PUT", f"/v2/{repo}/manifests/{reference}", repo=repo, data=body,
                                   headers={"Content-Type": media_type})

    def _push_referrer(self, repo: str, subject: str, artifact_digest: str, result: PushResult) -> None:
        body = self.store.path(artifact_digest).read_bytes()
        artifact = json.loads(body)
        for desc in [artifact["config"], *artifact["layers"]]:
            self._push_blob(repo, desc["digest"], result)
        resp = self._put_manifest(repo, artifact_digest, body, oci.MANIFEST_MEDIA_TYPE)
        if resp.headers.get("OCI-Subject") == subject:
            return  # the registry indexes referrers itself
        tag = subject.replace(":", "-")
        index = self.client.get_json(repo, f"manifests/{tag}", INDEX_MEDIA_TYPE) or {
            "schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": []}
        if any(m.get("digest") == artifact_digest for m in index["manifests"]):
            return
        index["manifests"].append({"mediaType": oci.MANIFEST_MEDIA_TYPE, "digest": artifact_digest,
                                   "size": len(body), "artifactType": artifact.get("artifactType"),
                                   **({"annotations": artifact["annotations"]}
                                      if artifact.get("annotations") else {})})
        self._put_manifest(repo, tag, json.dumps(index, sort_keys=True, separators=(",", ":")).encode(),
                           INDEX_MEDIA_TYPE)

    def push(self, image: str, manifest_digest: str, *, with_sbom: bool = True) -> PushResult:
        started = time.monotonic()
        repo = self.target.repo(image)
        tag = oci.content_tag(manifest_digest)
        result = PushResult(image, f"{self.client.host}/{repo}:{tag}", manifest_digest, "")
        body = self.store.path(manifest_digest).read_bytes()
        manifest = json.loads(body)
        for desc in [manifest["config"], *manifest["layers"]]:
            if not self.store.has(desc["digest"]):
                raise FxError(f"blob {desc['digest'][:19]} of {image} is missing from {self.store.root}",
                              where=image, hint=f"rebuild it: `fxstack build {image}`")
            self._push_blob(repo, desc["digest"], result)
        resp = self._put_manifest(repo, tag, body, oci.MANIFEST_MEDIA_TYPE)
        remote = resp.headers.get("Docker-Content-Digest") or \
            self.client.manifest_digest(repo, tag, oci.MANIFEST_MEDIA_TYPE) or ""
        result.remote_digest = remote
        if remote != manifest_digest:
            raise FxError(f"{self.client.host} stored {image} as {remote or 'an unknown digest'}, "
                          f"not {manifest_digest}", where=result.ref,
                          hint="the registry rewrites manifests (schema conversion?); push to an OCI "
                               "distribution registry that stores them as sent")
        artifact = sbom_manifest(self.store, image, manifest_digest) if with_sbom else None
        if artifact:
            self._push_referrer(repo, manifest_digest, artifact, result)
            result.sbom_digest = artifact
        result.seconds = round(time.monotonic() - started, 2)
        return result


def push_images(target: Target, client: RegistryClient, store: BlobStore, state: Path,
                images: list[str] | None, log: Callable[[str], None],
                on_upload: Callable[[str, int], None] | None = None) -> list[PushResult]:
    available = image_names(store)
    if not available:
        raise FxError(f"no image built in {store.root}", hint="build them first: `fxstack build`")
    chosen = images or available
    unknown = [i for i in chosen if i not in available]
    if unknown:
        raise FxError(f"not in the OCI store {store.root}: {', '.join(unknown)}",
                      hint=f"build them first (`fxstack build {' '.join(unknown)}`); built: "
                           f"{', '.join(available) or 'none'}")
    client.ping()  # reachability, TLS and login are checked before any upload starts
    pusher = Pusher(client, target, store, state, log, on_upload)
    results = []
    for image in chosen:
        r = pusher.push(image, sbom.image_manifest(store, image))
        log(f"{image}: {r.ref}  local {r.local_digest}  remote {r.remote_digest}  "
            f"({r.blobs_sent} blobs sent, {r.bytes_sent / 1e6:.1f} MB; {r.blobs_present} already there, "
            f"{r.blobs_mounted} mounted; {r.seconds:.1f} s)")
        results.append(r)
    return results


def results_json(results: list[PushResult]) -> str:
    return json.dumps([asdict(r) for r in results], indent=1)
