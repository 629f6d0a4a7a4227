"""`fxstack gc`: give back the disk that earlier builds and loads left behind.

Every code change adds an app layer and a manifest to the OCI store, the local registry and
Docker; every dependency change adds package layers and installed trees. Nothing of that is
ever read again once a newer image of the same name exists, and over a few days of work it
grows to tens of GB. What is kept: the images the last build of each name produced
(`oci/index.json`) and the images Compose is set to run (`images.env`), and the caches that
the current `poetry.lock` and builder version can still hit. Everything else goes.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import time
from pathlib import Path
from typing import Callable

from ..envfile import read_env
from ..errors import FxError
from ..image.builder import Builder
from ..image.debian_lock import DebianLock
from ..image.oci import content_tag
from ..image.settings import TREE_VERSION
from ..image.store import BlobStore, KeyedCache, state_lock
from ..load.loader import prune_docker_images
from ..load.registry import LocalRegistry
from ..reclaim import Freed

# A temporary file this old belongs to a write that was interrupted, not to one under way.
STALE_TEMP_SECONDS = 3600


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


# -- what is kept ------------------------------------------------------------------------------

def kept_manifests(store: BlobStore, images_env: Path) -> dict[str, str]:
    """manifest digest -> image name, for the images still in use."""
    kept: dict[str, str] = {}
    try:
        index = json.loads((store.root / "index.json").read_text())
        for m in index.get("manifests", []):
            kept[m["digest"]] = m.get("annotations", {}).get("org.opencontainers.image.ref.name", "?")
    except FileNotFoundError:
        pass
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise FxError(f"not a valid OCI index: {exc}", where=str(store.root / "index.json"),
                      hint="rebuild (`fxstack build`) to rewrite it, then run gc again") from exc
    for name, tag in _env_refs(images_env).items():
        # A content tag is the first 12 hex digits of the manifest digest.
        matches = [p for p in store.blobs.glob(f"{tag}*") if not p.name.startswith(".")]
        if len(matches) == 1:
            kept["sha256:" + matches[0].name] = name
    return kept


def _env_refs(images_env: Path) -> dict[str, str]:
    """image name -> content tag, for the refs images.env holds (others are not ours to keep)."""
    refs = {}
    for ref in read_env(images_env).values():
        name, _, tag = ref.strip().rpartition(":")
        if name and re.fullmatch(r"[0-9a-f]{12}", tag):
            refs[name] = tag
    return refs


def reachable_blobs(store: BlobStore, manifests: dict[str, str]) -> set[str]:
    keep = set()
    for digest in manifests:
        path = store.path(digest)
        if not path.exists():
            continue
        manifest = json.loads(path.read_bytes())
        keep.add(digest)
        keep.add(manifest["config"]["digest"])
        keep.update(layer["digest"] for layer in manifest["layers"])
    return keep


def locked_hashes(lock_path: Path) -> set[str]:
    """Every sha256 the lock names (all groups, all platforms): a superset is safe to keep."""
    return set(re.findall(r"sha256:([0-9a-f]{64})", lock_path.read_text()))


# -- the parts ---------------------------------------------------------------------------------

def prune_store(store: BlobStore, keep: set[str], dry_run: bool) -> Freed:
    freed = Freed("OCI store (blobs)")
    now = time.time()
    for path in store.blobs.iterdir():
        if path.name.startswith("."):
            if now - path.stat().st_mtime < STALE_TEMP_SECONDS:
                continue  # a write may be under way
        elif "sha256:" + path.name in keep:
            continue
        freed.add(path)
        if not dry_run:
            _remove(path)
    return freed


def prune_keyed_cache(cache: KeyedCache, store: BlobStore, part: str, dry_run: bool) -> Freed:
    """Records whose blob is gone would only ever miss: drop them with it."""
    freed = Freed(part)
    for path in cache.root.glob("*.json"):
        record = cache.get(path.stem)
        if record is None or not store.has(record.get("digest", "")):
            freed.add(path)
            if not dry_run:
                _remove(path)
    return freed


def _prune_entries(root: Path, part: str, wanted: Callable[[str], bool], dry_run: bool) -> Freed:
    """Remove each entry of `root` whose name is not wanted (dot-names are work in progress)."""
    freed = Freed(part)
    if not root.is_dir():
        return freed
    for path in root.iterdir():
        if path.name.startswith(".") or wanted(path.name):
            continue
        freed.add(path)
        if not dry_run:
            _remove(path)
    return freed


def prune_trees(trees: Path, hashes: set[str], dry_run: bool) -> Freed:
    """Installed wheel trees made by another TREE_VERSION, or for files the lock no longer pins."""
    current = re.compile(rf"-t{TREE_VERSION}c?$")
    prefixes = {h[:32] for h in hashes}
    return _prune_entries(trees, "installed wheel trees",
                          lambda n: bool(current.search(n)) and n.split("-", 1)[0] in prefixes,
                          dry_run)


def prune_dists(dist: Path, hashes: set[str], dry_run: bool) -> Freed:
    """Downloaded files the lock no longer pins."""
    return _prune_entries(dist, "downloaded distributions", hashes.__contains__, dry_run)


def prune_debs(debs: Path, lock: DebianLock, dry_run: bool) -> Freed:
    """Cached .deb files (and their control records) that images/debian.lock no longer pins."""
    pinned = {d.sha256 for e in lock.entries.values() for d in e.debs() if d.sha256}
    return _prune_entries(debs, "Debian packages (.deb cache)",
                          lambda n: n.split(".", 1)[0] in pinned, dry_run)


def run_gc(builder, *, dry_run: bool = False, registry: bool = True, docker: bool = True,
           log: Callable[[str], None] = print) -> list[Freed]:
    """Sweep the state directory of `builder` (a Builder); returns what each part freed."""
    state = builder.state
    with state_lock(state, exclusive=True):
        kept = kept_manifests(builder.store, state / "images.env")
        keep = reachable_blobs(builder.store, kept)
        hashes = locked_hashes(builder.lock.lock_path)
        results = [prune_store(builder.store, keep, dry_run)]
        if not dry_run:
            results.append(prune_keyed_cache(builder.layer_cache, builder.store,
                                             "layer cache records", dry_run))
            results.append(prune_keyed_cache(builder.rootfs_cache, builder.store,
                                             "root filesystem cache records", dry_run))
        results.append(prune_trees(builder.trees, hashes, dry_run))
        results.append(prune_dists(builder.dists.root, hashes, dry_run))
        results.append(prune_debs(builder.rootfs.debs.root, builder.debian_lock, dry_run))
        refs = {f"{name}:{content_tag(d)}" for d, name in kept.items()}
        if registry:
            results.append(LocalRegistry(state).prune(refs, dry_run, log))
        if docker:
            results.append(prune_docker_images(set(builder.specs), refs, dry_run, log))
    return results


def _cmd_gc(args: argparse.Namespace) -> int:
    builder = Builder()
    results = run_gc(builder, dry_run=args.dry_run, registry=not args.keep_registry,
                     docker=not args.keep_docker)
    verb = "would free" if args.dry_run else "freed"
    print(f"{'part':34} {'items':>7} {'MB ' + verb:>16}")
    for r in results:
        print(f"{r.part:34} {r.items:7d} {r.bytes / 1e6:16.1f}")
        for note in r.notes:
            print(f"  {note}")
    print(f"{'total':34} {sum(r.items for r in results):7d} "
          f"{sum(r.bytes for r in results) / 1e6:16.1f}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("gc", help="remove image layers, registry data, Docker images and caches "
                                  "that no current image uses")
    p.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    p.add_argument("--keep-registry", action="store_true", help="leave the local registry as it is")
    p.add_argument("--keep-docker", action="store_true",
                   help="leave Docker's images as they are (by default, images of our names whose "
                        "tag is not current are removed unless a container uses them)")
    p.set_defaults(func=_cmd_gc)
