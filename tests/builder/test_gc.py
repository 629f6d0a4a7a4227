"""`fxstack gc`: what it keeps and what it removes, on a real store, registry and dockerd."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path

import pytest
import requests

from fxstack.image import oci
from fxstack.image.store import BlobStore, KeyedCache, state_lock
from fxstack.errors import FxError
from fxstack.workflow.gc import (STALE_TEMP_SECONDS, kept_manifests, locked_hashes, prune_dists,
                        prune_keyed_cache, prune_store, prune_trees, reachable_blobs)
from fxstack.specs import load_specs
from fxstack.stack.docker_state import free_port

ROOT = Path(__file__).resolve().parents[2]
SPEC = load_specs(ROOT)["redis-exporter"]


def layer(store: BlobStore, name: str, text: str) -> oci.Layer:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text.encode()))
    digest, size = store.put_bytes(buf.getvalue())
    return oci.Layer(digest, size, name)


def image(store: BlobStore, *layers: oci.Layer) -> str:
    return oci.write_image(store, SPEC, list(layers))[0]


@pytest.fixture
def store(tmp_path):
    return BlobStore(tmp_path / "oci")


@pytest.mark.unit
def test_store_keeps_what_index_and_images_env_name_and_nothing_else(store, tmp_path):
    shared = layer(store, "shared", "base")
    old_app, new_app, compose_app = (layer(store, "app", v) for v in ("v1", "v2", "v3"))
    old = image(store, shared, old_app)
    new = image(store, shared, new_app)
    running = image(store, shared, compose_app)
    oci.update_index(store, {"redis-exporter": (new, store.path(new).stat().st_size)})
    env = tmp_path / "images.env"
    env.write_text(f"# refs\nREDIS_EXPORTER_IMAGE=redis-exporter:{oci.content_tag(running)}\n")
    interrupted = store.blobs / ".incoming.abc.tmp"
    interrupted.write_bytes(b"half a layer")
    os.utime(interrupted, (time.time() - STALE_TEMP_SECONDS - 1,) * 2)
    in_flight = store.blobs / ".incoming.def.tmp"
    in_flight.write_bytes(b"being written")

    kept = kept_manifests(store, env)
    assert set(kept) == {new, running}
    keep = reachable_blobs(store, kept)
    dry = prune_store(store, keep, dry_run=True)
    assert store.has(old) and interrupted.exists()
    old_config = json.loads(store.path(old).read_bytes())["config"]["digest"]
    freed = prune_store(store, keep, dry_run=False)
    assert (dry.items, dry.bytes) == (freed.items, freed.bytes)
    # the old manifest, its config, its app layer and the interrupted write: nothing more
    assert freed.items == 4
    assert not store.has(old) and not store.has(old_app.digest) and not store.has(old_config)
    assert not interrupted.exists() and in_flight.exists()
    for digest in (new, running, shared.digest, new_app.digest, compose_app.digest):
        assert store.has(digest)


@pytest.mark.unit
def test_a_broken_index_is_named_not_swept(store, tmp_path):
    (store.root / "index.json").write_text("{not json")
    with pytest.raises(FxError) as err:
        kept_manifests(store, tmp_path / "images.env")
    assert str(store.root / "index.json") in str(err.value) and "fxstack build" in str(err.value)


@pytest.mark.unit
def test_cache_records_trees_and_downloads_follow_the_store_and_the_lock(store, tmp_path):
    kept_layer = layer(store, "kept", "x")
    cache = KeyedCache(tmp_path / "layers")
    cache.put("alive", {"digest": kept_layer.digest, "size": kept_layer.size})
    cache.put("dead", {"digest": "sha256:" + "0" * 64, "size": 1})
    assert prune_keyed_cache(cache, store, "layers", dry_run=False).items == 1
    assert cache.get("alive") and cache.get("dead") is None

    hashes = locked_hashes(ROOT / "poetry.lock")
    assert len(hashes) > 300
    locked = sorted(hashes)[0]
    from fxstack.image.settings import TREE_VERSION

    trees = tmp_path / "trees"
    current = trees / f"{locked[:32]}-pkg-1.0-py3-none-any-t{TREE_VERSION}c"
    old_format = trees / f"{locked[:32]}-pkg-1.0-py3-none-any-b2c"
    unlocked = trees / f"{'f' * 32}-gone-0.1-py3-none-any-t{TREE_VERSION}c"
    for t in (current, old_format, unlocked):
        (t / "pkg").mkdir(parents=True)
        (t / "pkg" / "m.py").write_text("x = 1\n")
    freed = prune_trees(trees, hashes, dry_run=False)
    assert (freed.items, freed.bytes) == (2, 12)
    assert current.exists() and not old_format.exists() and not unlocked.exists()

    dist = tmp_path / "dist"
    (dist / locked).mkdir(parents=True)
    (dist / ("e" * 64)).mkdir()
    assert prune_dists(dist, hashes, dry_run=False).items == 1
    assert (dist / locked).exists() and not (dist / ("e" * 64)).exists()


@pytest.mark.unit
def test_gc_refuses_while_a_build_holds_the_state(tmp_path):
    with state_lock(tmp_path, exclusive=False):
        with pytest.raises(FxError) as err:
            with state_lock(tmp_path, exclusive=True):
                pass
    assert str(tmp_path) in str(err.value) and "gc" in str(err.value)
    with state_lock(tmp_path, exclusive=True):  # free again once the build is done
        pass


@pytest.mark.integration
def test_registry_prune_deletes_old_manifests_and_their_blobs(store, tmp_path):
    from fxstack.load.registry import LocalRegistry

    shared = layer(store, "shared", "base" * 1000)
    old_app, new_app = layer(store, "app", "old"), layer(store, "app", "new")
    old, new = image(store, shared, old_app), image(store, shared, new_app)
    registry = LocalRegistry(tmp_path / "state", port=free_port())
    try:
        registry.ensure_running()
        for digest in (old, new):
            registry.push(store, "redis-exporter", oci.content_tag(digest), digest, lambda m: None)
        assert registry.holds(store, old)
        keep = {f"redis-exporter:{oci.content_tag(new)}"}
        assert registry.prune(keep, dry_run=True, log=print).items == 1
        freed = registry.prune(keep, dry_run=False, log=print)
        assert freed.items == 1 and freed.bytes >= old_app.size
        assert not registry.holds(store, old) and registry.holds(store, new)
        registry.ensure_running()  # gc leaves it stopped; the next load starts it
        base = f"{registry.base}/v2/redis-exporter"
        accept = {"Accept": oci.MANIFEST_MEDIA_TYPE}
        assert requests.head(f"{base}/manifests/{oci.content_tag(old)}", headers=accept).status_code == 404
        assert requests.head(f"{base}/manifests/{oci.content_tag(new)}", headers=accept).status_code == 200
        assert requests.head(f"{base}/blobs/{old_app.digest}").status_code == 404
        for digest in (shared.digest, new_app.digest):
            assert requests.head(f"{base}/blobs/{digest}").status_code == 200
    finally:
        registry.stop()


@pytest.mark.integration
def test_docker_prune_removes_only_old_tags_of_our_names(cpu_images, docker_client):
    from fxstack.load.loader import prune_docker_images

    _, images = cpu_images
    current = images["redis-exporter"].ref
    stale = "redis-exporter:000000000000"
    foreign = "fxgc-test/not-ours:1"
    docker_client.images.get(current).tag(stale)
    docker_client.images.get(current).tag(foreign)
    try:
        # (a shared dockerd may hold older tags of its own: those count too)
        assert prune_docker_images({"redis-exporter"}, {current}, True, print).items >= 1
        assert docker_client.images.list(name=stale)
        freed = prune_docker_images({"redis-exporter"}, {current}, False, print)
        assert freed.items >= 1 and not any(stale in n for n in freed.notes), freed.notes
        assert not docker_client.images.list(name=stale)
        assert docker_client.images.list(name=current) and docker_client.images.list(name=foreign)
    finally:
        for ref in (stale, foreign):
            if docker_client.images.list(name=ref):
                docker_client.images.remove(ref)


@pytest.mark.integration
def test_a_build_says_when_the_store_has_grown_past_the_hint(cpu_images, monkeypatch):
    from fxstack.image.builder import Builder

    messages = []
    monkeypatch.setenv("FXSTACK_GC_HINT_GB", "1000")
    Builder(log=messages.append).build(["redis-exporter"])
    assert not any("fxstack gc" in m for m in messages)
    monkeypatch.setenv("FXSTACK_GC_HINT_GB", "0.001")
    Builder(log=messages.append).build(["redis-exporter"])
    assert any("fxstack gc" in m and "GB of layers" in m for m in messages), messages


@pytest.mark.unit
def test_debs_follow_the_debian_lock(tmp_path):
    """A .deb the lock pins stays (with its control record); one no entry pins goes."""
    from fxstack.image.debian_lock import DebianLock, LockedDeb, LockEntry
    from fxstack.workflow.gc import prune_debs

    pinned, dropped = "a" * 64, "b" * 64
    debs = tmp_path / "debs"
    debs.mkdir()
    for digest in (pinned, dropped):
        (debs / f"{digest}.deb").write_bytes(b"deb")
        (debs / f"{digest}.control").write_text("Package: x\n")
    (debs / f".{dropped}.tmp").write_bytes(b"a fetch under way")
    lock = DebianLock(tmp_path / "debian.lock")
    lock.record("x", LockEntry({"x": LockedDeb("x", "1", "all", pinned)}, "20261129T000000Z"))
    freed = prune_debs(debs, lock, dry_run=False)
    assert freed.items == 2
    assert sorted(p.name for p in debs.iterdir()) == [f".{dropped}.tmp", f"{pinned}.control", f"{pinned}.deb"]
