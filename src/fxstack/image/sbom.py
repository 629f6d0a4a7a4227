"""A CycloneDX SBOM per image, stored next to it in the OCI layout as a referrer.

What an image holds, in a form other tools read (Trivy, Grype, Dependency-Track):
- every Python package the builder installed: name, version, the sha256 `poetry.lock` pins for
  the file it installed, purl `pkg:pypi/<name>@<version>`;
- every Debian package of its root filesystem, read from that layer's dpkg database
  (`var/lib/dpkg/status`, or distroless-style `var/lib/dpkg/status.d/*`), purl
  `pkg:deb/debian/<name>@<version>?arch=<arch>&distro=debian-12`.

Written with cyclonedx-python-lib (CycloneDX 1.6 JSON). The bytes are a pure function of the
image: the serial number is a UUID derived from the manifest digest and the timestamp is the
image's `created` (SOURCE_DATE_EPOCH), so two builds of the same image give the same SBOM.

Stored as an OCI 1.1 referrer: an artifact manifest (artifactType application/vnd.cyclonedx+json,
the empty config, one layer holding the document, `subject` = the image's manifest) in the same
blob store, listed in index.json as `<image>.sbom` (the layout's index is keyed by name, one
current manifest per name; `fxstack gc` keeps what the index lists).
"""

from __future__ import annotations

import datetime
import json
import tarfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from ..errors import FxError
from ..lock.poetry_lock import LockedFile, PoetryLock
from ..specs import ImageSpec
from . import oci
from .deb822 import paragraphs
from .settings import SOURCE_DATE_EPOCH, created
from .store import BlobStore, canonical_json

SBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json"
EMPTY_MEDIA_TYPE = "application/vnd.oci.empty.v1+json"
EMPTY_BLOB = b"{}"
DEBIAN_DISTRO = "debian-12"
# uuid5 namespace for serial numbers: fixed, so the same manifest always gets the same serial
SERIAL_NAMESPACE = uuid.UUID("6f2b4a1e-5c3d-4e8f-9a70-0d1c2b3a4f59")


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    arch: str


def parse_dpkg_status(text: str) -> list[DebPackage]:
    """Installed packages from a dpkg status file (paragraphs of `Field: value`)."""
    found = []
    for fields in paragraphs(text):
        if fields.get("Package") and fields.get("Version") and \
                fields.get("Status", "install ok installed").endswith(" installed"):
            found.append(DebPackage(fields["Package"], fields["Version"], fields.get("Architecture", "all")))
    return sorted(set(found), key=lambda p: (p.name, p.arch))


def debian_packages(store: BlobStore, manifest: dict, config: dict) -> list[DebPackage]:
    """The dpkg database of the image's root filesystem layer(s) (history `fxstack: debian: ...`)."""
    history = [h.get("created_by", "") for h in config.get("history", [])]
    packages: list[DebPackage] = []
    for layer, made_by in zip(manifest["layers"], history):
        if not made_by.startswith("fxstack: debian:"):
            continue
        with tarfile.open(store.path(layer["digest"]), mode="r|") as tar:
            for member in tar:
                name = member.name.lstrip("./")
                if member.isfile() and (name == "var/lib/dpkg/status"
                                        or name.startswith("var/lib/dpkg/status.d/")):
                    fh = tar.extractfile(member)
                    packages += parse_dpkg_status(fh.read().decode("utf-8", "replace") if fh else "")
    return sorted(set(packages), key=lambda p: (p.name, p.arch))


def python_packages(lock: PoetryLock, spec: ImageSpec) -> list[LockedFile]:
    """The files the builder installs for the spec's groups (the same walk as the builder)."""
    if spec.kind != "python" or not spec.groups:
        return []
    return sorted(lock.files_for(spec.groups), key=lambda f: f.name)


def make_sbom(spec: ImageSpec, manifest_digest: str, files: Iterable[LockedFile],
              debs: Iterable[DebPackage]) -> bytes:
    """The CycloneDX 1.6 JSON document, as bytes that depend only on the arguments."""
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    hexdigest = manifest_digest.removeprefix("sha256:")
    image_purl = PackageURL(type="oci", name=spec.name, version=manifest_digest)
    image = Component(type=ComponentType.CONTAINER, name=spec.name, version=manifest_digest,
                      bom_ref=image_purl.to_string(), purl=image_purl, description=spec.description,
                      hashes=[HashType(alg=HashAlgorithm.SHA_256, content=hexdigest)])
    components = []
    for f in files:
        purl = PackageURL(type="pypi", name=f.name, version=f.version)
        components.append(Component(
            type=ComponentType.LIBRARY, name=f.name, version=f.version, bom_ref=purl.to_string(),
            purl=purl, hashes=[HashType(alg=HashAlgorithm.SHA_256, content=f.sha256)],
            properties=[Property(name="fxstack:file", value=f.filename)]))
    for d in debs:
        purl = PackageURL(type="deb", namespace="debian", name=d.name, version=d.version,
                          qualifiers={"arch": d.arch, "distro": DEBIAN_DISTRO})
        components.append(Component(type=ComponentType.LIBRARY if d.name.startswith("lib")
                                    else ComponentType.APPLICATION,
                                    name=d.name, version=d.version, bom_ref=purl.to_string(), purl=purl))
    timestamp = datetime.datetime.fromtimestamp(SOURCE_DATE_EPOCH, datetime.timezone.utc)
    bom = Bom(components=components,
              serial_number=uuid.uuid5(SERIAL_NAMESPACE, manifest_digest),
              metadata=BomMetaData(component=image, timestamp=timestamp))
    # the image contains every component (no package-to-package graph: the lock has that)
    bom.register_dependency(image, components)
    # One-line JSON with sorted keys: the library's own output, re-serialised canonically so a
    # change in its key order cannot change our bytes.
    text = JsonV1Dot6(bom).output_as_string(indent=None)
    return canonical_json(json.loads(text))


def validate(document: bytes) -> None:
    """The library's strict JSON-schema validator for CycloneDX 1.6; FxError on any error."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(document.decode())
    if error is not None:
        raise FxError(f"the SBOM is not valid CycloneDX 1.6: {error}")


# -- the OCI layout ----------------------------------------------------------------------------

def _index(store: BlobStore) -> dict[str, dict]:
    return oci.read_index(store)


def sbom_ref_name(image: str) -> str:
    return f"{image}.sbom"


def attached(store: BlobStore, image: str, manifest_digest: str) -> str | None:
    """The digest of the SBOM blob attached to this manifest, if the index lists one."""
    entry = _index(store).get(sbom_ref_name(image))
    if not entry or entry.get("annotations", {}).get("fxstack.sbom.subject") != manifest_digest:
        return None
    artifact = oci.read_manifest(store, entry["digest"])
    return artifact["layers"][0]["digest"]


def attach(store: BlobStore, spec: ImageSpec, lock: PoetryLock, manifest_digest: str) -> str:
    """Write (if not there yet) the image's SBOM and its referrer manifest; return the SBOM digest."""
    have = attached(store, spec.name, manifest_digest)
    if have and store.has(have):
        return have
    manifest = oci.read_manifest(store, manifest_digest)
    config = json.loads(store.path(manifest["config"]["digest"]).read_bytes())
    document = make_sbom(spec, manifest_digest, python_packages(lock, spec),
                         debian_packages(store, manifest, config))
    sbom_digest, sbom_size = store.put_bytes(document)
    empty_digest, empty_size = store.put_bytes(EMPTY_BLOB)
    subject_size = store.path(manifest_digest).stat().st_size
    artifact = {
        "schemaVersion": 2,
        "mediaType": oci.MANIFEST_MEDIA_TYPE,
        "artifactType": SBOM_MEDIA_TYPE,
        "config": {"mediaType": EMPTY_MEDIA_TYPE, "digest": empty_digest, "size": empty_size, "data": "e30="},
        "layers": [{"mediaType": SBOM_MEDIA_TYPE, "digest": sbom_digest, "size": sbom_size,
                    "annotations": {"org.opencontainers.image.title": f"{spec.name}.cdx.json"}}],
        "subject": {"mediaType": oci.MANIFEST_MEDIA_TYPE, "digest": manifest_digest, "size": subject_size},
        "annotations": {"org.opencontainers.image.created": created()},
    }
    digest, size = store.put_bytes(canonical_json(artifact))
    entry = {
        "mediaType": oci.MANIFEST_MEDIA_TYPE, "artifactType": SBOM_MEDIA_TYPE, "digest": digest, "size": size,
        "annotations": {"org.opencontainers.image.ref.name": sbom_ref_name(spec.name),
                        "fxstack.sbom.subject": manifest_digest}}
    # under the index lock: a build in another process may be adding its image right now
    oci.edit_index(store, lambda entries: entries.__setitem__(sbom_ref_name(spec.name), entry))
    return sbom_digest


def image_manifest(store: BlobStore, image: str) -> str:
    """The manifest digest the OCI index names for an image (the last build of that name)."""
    entry = _index(store).get(image)
    if entry is None:
        raise FxError(f"no image {image!r} in the OCI store {store.root}",
                      hint=f"build it first: `fxstack build {image}`")
    return entry["digest"]


def sbom_path(store: BlobStore, digest: str) -> Path:
    return store.path(digest)
