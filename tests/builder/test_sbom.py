"""The SBOM: CycloneDX 1.6 from the real lock and a root filesystem layer's dpkg database, checked
with cyclonedx-python-lib's own strict JSON validator, stored as an OCI referrer, same bytes twice."""

from __future__ import annotations

import json

import pytest

from fxstack.image import oci, sbom
from fxstack.image.store import BlobStore
from fxstack.lock.poetry_lock import PoetryLock
from fxstack.paths import repo_root
from fxstack.specs import load_specs
from fixture_tars import tar_of

pytestmark = pytest.mark.unit

DPKG_STATUS = """\
Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u15

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u14
Description: GNU C Library
 a continuation line: Version: 9.9

Package: removed-one
Status: deinstall ok config-files
Architecture: amd64
Version: 1.0

Package: python3.11
Status: install ok installed
Architecture: amd64
Version: 3.11.2-6+deb12u9
"""


def _image(tmp_path, spec_name: str = "fx-fastapi"):
    """A real spec and lock; a store holding an image whose rootfs layer has a dpkg database."""
    root = repo_root()
    spec = load_specs(root)[spec_name]
    lock = PoetryLock(root / "poetry.lock", root / "pyproject.toml")
    store = BlobStore(tmp_path / "oci")
    rootfs, rsize = store.put_bytes(tar_of({"etc/os-release": b"ID=debian\n",
                                          "var/lib/dpkg/status": DPKG_STATUS.encode()}))
    app, asize = store.put_bytes(tar_of({"app/x.py": b"print(1)\n"}))
    layers = [oci.Layer(rootfs, rsize, "debian: python3"), oci.Layer(app, asize, "app: x")]
    digest, size = oci.write_image(store, spec, layers)
    oci.update_index(store, {spec.name: (digest, size)})
    return store, spec, lock, digest


def test_dpkg_status_lists_installed_packages_only():
    names = [(p.name, p.version, p.arch) for p in sbom.parse_dpkg_status(DPKG_STATUS)]
    assert names == [("base-files", "12.4+deb12u15", "amd64"), ("libc6", "2.36-9+deb12u14", "amd64"),
                     ("python3.11", "3.11.2-6+deb12u9", "amd64")]


def test_sbom_lists_every_python_and_debian_package_and_validates(tmp_path):
    store, spec, lock, digest = _image(tmp_path)
    blob = sbom.attach(store, spec, lock, digest)
    document = store.path(blob).read_bytes()
    sbom.validate(document)  # cyclonedx-python-lib's strict JSON-schema validator, CycloneDX 1.6
    bom = json.loads(document)
    assert bom["bomFormat"] == "CycloneDX" and bom["specVersion"] == "1.6"
    assert bom["metadata"]["component"]["type"] == "container"
    assert bom["metadata"]["component"]["version"] == digest
    by_purl = {c["purl"]: c for c in bom["components"]}
    installed = lock.files_for(spec.groups)
    assert len(installed) > 50
    for f in installed:
        c = by_purl[f"pkg:pypi/{f.name}@{f.version}"]
        assert c["hashes"] == [{"alg": "SHA-256", "content": f.sha256}], f.name
    debs = {p for p in by_purl if p.startswith("pkg:deb/")}
    assert debs == {"pkg:deb/debian/base-files@12.4%2Bdeb12u15?arch=amd64&distro=debian-12",
                    "pkg:deb/debian/libc6@2.36-9%2Bdeb12u14?arch=amd64&distro=debian-12",
                    "pkg:deb/debian/python3.11@3.11.2-6%2Bdeb12u9?arch=amd64&distro=debian-12"}
    assert len(bom["components"]) == len(installed) + 3
    # the image depends on every component
    root = [d for d in bom["dependencies"] if d["ref"] == bom["metadata"]["component"]["bom-ref"]][0]
    assert len(root["dependsOn"]) == len(bom["components"])


def test_a_broken_document_fails_the_validator(tmp_path):
    store, spec, lock, digest = _image(tmp_path)
    bom = json.loads(store.path(sbom.attach(store, spec, lock, digest)).read_bytes())
    pypi = [c for c in bom["components"] if c["purl"].startswith("pkg:pypi/")][0]
    pypi["hashes"][0]["content"] = "not-a-sha256"
    from fxstack.errors import FxError

    with pytest.raises(FxError, match="not valid CycloneDX"):
        sbom.validate(json.dumps(bom).encode())


def test_same_image_same_sbom_bytes(tmp_path):
    store1, spec, lock, digest1 = _image(tmp_path / "a")
    store2, _, _, digest2 = _image(tmp_path / "b")
    assert digest1 == digest2
    one = store1.path(sbom.attach(store1, spec, lock, digest1)).read_bytes()
    two = store2.path(sbom.attach(store2, spec, lock, digest2)).read_bytes()
    assert one == two
    bom = json.loads(one)
    assert bom["metadata"]["timestamp"].startswith("2025-05-20T00:00:00")
    assert bom["serialNumber"].startswith("urn:uuid:")


def test_stored_as_a_referrer_of_the_image_in_the_index(tmp_path):
    store, spec, lock, digest = _image(tmp_path)
    blob = sbom.attach(store, spec, lock, digest)
    index = {m["annotations"]["org.opencontainers.image.ref.name"]: m
             for m in json.loads((store.root / "index.json").read_text())["manifests"]}
    assert index[spec.name]["digest"] == digest
    entry = index[f"{spec.name}.sbom"]
    assert entry["artifactType"] == "application/vnd.cyclonedx+json"
    artifact = oci.read_manifest(store, entry["digest"])
    assert artifact["subject"]["digest"] == digest
    assert artifact["config"]["mediaType"] == "application/vnd.oci.empty.v1+json"
    assert store.path(artifact["config"]["digest"]).read_bytes() == b"{}"
    assert artifact["layers"][0]["digest"] == blob
    # attaching again changes nothing; a later build of the image keeps the SBOM entry
    before = (store.root / "index.json").read_bytes()
    assert sbom.attach(store, spec, lock, digest) == blob
    assert (store.root / "index.json").read_bytes() == before
    oci.update_index(store, {spec.name: (digest, store.path(digest).stat().st_size)})
    assert sbom.attached(store, spec.name, digest) == blob
    # gc keeps what the index lists: the SBOM's blobs are reachable from it
    from fxstack.workflow.gc import kept_manifests, reachable_blobs

    keep = reachable_blobs(store, kept_manifests(store, tmp_path / "no-images.env"))
    assert {entry["digest"], blob, artifact["config"]["digest"]} <= keep


def test_service_image_has_debian_packages_only(tmp_path):
    store, spec, lock, digest = _image(tmp_path, "redis")
    bom = json.loads(store.path(sbom.attach(store, spec, lock, digest)).read_bytes())
    assert {c["purl"].split("/")[0] for c in bom["components"]} == {"pkg:deb"}


def test_cli_prints_the_stored_sbom(tmp_path, monkeypatch, capsys):
    from fxstack.cli import main

    monkeypatch.setenv("FXSTACK_STATE", str(tmp_path))
    store, spec, lock, digest = _image(tmp_path)
    assert main(["sbom", "fx-fastapi", "--validate"]) == 0
    out = capsys.readouterr().out
    assert json.loads(out)["metadata"]["component"]["version"] == digest
    assert main(["sbom", "no-such-image"]) == 2


def test_up_writes_only_the_missing_sboms_after_the_stack_is_ready(tmp_path):
    """`up` writes the SBOMs its new images lack once the stack is ready
    (workflow.ensure.missing_sboms, write_sboms): the same bytes as `attach`, and nothing is
    missing afterwards."""
    from fxstack.image.builder import Builder, BuiltImage
    from fxstack.workflow.ensure import missing_sboms, write_sboms

    store, spec, lock, digest = _image(tmp_path)
    builder = Builder(root=repo_root(), state=tmp_path, log=lambda m: None)
    image = BuiltImage(spec.name, digest, [], 0.0)
    assert missing_sboms(builder, [image]) == [image]
    write_sboms(builder, [image])
    written = sbom.attached(store, spec.name, digest)
    assert written and store.has(written)
    assert sbom.attach(store, spec, lock, digest) == written
    assert missing_sboms(builder, [image]) == []
