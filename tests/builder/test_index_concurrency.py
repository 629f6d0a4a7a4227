"""Two builds at once on one state directory: both images and both SBOMs end up in the OCI
layout's index.json. Each process does what a build does once its layers are stored
(oci.write_image, oci.update_index) and then what `fxstack up` does next (sbom.attach, the
image's SBOM referrer): two read-modify-writes of index.json, started together on a barrier."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path

import pytest

from fxstack.image import oci, sbom
from fxstack.image.store import BlobStore
from fxstack.lock.poetry_lock import PoetryLock
from fxstack.paths import repo_root
from fxstack.specs import load_specs
from fixture_tars import tar_of

pytestmark = pytest.mark.unit

IMAGES = ("redis", "prometheus")
ROUNDS = 4  # without the index lock an entry is lost in the first round


def _build(state: str, name: str, barrier, errors) -> None:
    try:
        root = repo_root()
        spec = load_specs(root)[name]
        lock = PoetryLock(root / "poetry.lock", root / "pyproject.toml")
        store = BlobStore(Path(state) / "oci")
        status = f"Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n"
        digest, size = store.put_bytes(tar_of({"var/lib/dpkg/status": status.encode()}))
        manifest = oci.write_image(store, spec, [oci.Layer(digest, size, f"debian: {name}")])
        barrier.wait()
        oci.update_index(store, {name: manifest})
        barrier.wait()
        sbom.attach(store, spec, lock, manifest[0])
    except BaseException as exc:  # reported by the parent, with the image
        errors.put(f"{name}: {exc!r}")
        barrier.abort()


def test_two_builds_at_once_both_end_listed_with_their_sboms(tmp_path):
    ctx = multiprocessing.get_context("fork")
    for round_ in range(ROUNDS):
        state = tmp_path / f"state{round_}"
        barrier, errors = ctx.Barrier(len(IMAGES)), ctx.Queue()
        procs = [ctx.Process(target=_build, args=(str(state), name, barrier, errors)) for name in IMAGES]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert errors.empty(), errors.get()
        assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
        index = json.loads((state / "oci" / "index.json").read_text())
        names = {m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]}
        assert names == {*IMAGES, *(sbom.sbom_ref_name(n) for n in IMAGES)}, f"round {round_}: {sorted(names)}"
        store = BlobStore(state / "oci")
        for name in IMAGES:
            assert sbom.attached(store, name, sbom.image_manifest(store, name)), (round_, name)
