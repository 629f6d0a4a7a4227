"""Build images from specs: root filesystem, shared package layers, app layer, config."""

from __future__ import annotations

import hashlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..errors import FxError
from ..paths import repo_root, state_dir
from ..specs import ImageSpec, load_specs
from . import oci, runtime
from .debian import RootfsBuilder, RootfsRecipe
from .debian_lock import DebianLock
from .layers import group_by_users, layers_for
from .settings import BUILDER_VERSION, MAX_LAYERS, TREE_VERSION
from .store import BlobStore, KeyedCache, inputs_key, state_lock
from .tarball import Entry, merge_entries, tree_entries, write_tar
from .trim import Trim
from .wheels import DistCache, build_pure_wheel, install_tree, tree_key

if TYPE_CHECKING:  # parsing the lock (and importing `packaging` for it) waits until a build needs it
    from ..lock.poetry_lock import LockedFile, PoetryLock


@dataclass
class BuiltImage:
    name: str
    manifest_digest: str
    layers: list[oci.Layer]
    seconds: float
    cached_layers: int = 0

    @property
    def tag(self) -> str:
        return oci.content_tag(self.manifest_digest)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def size(self) -> int:
        return sum(l.size for l in self.layers)


def cache_dir(state: Path) -> Path:
    """FXSTACK_CACHE when set (shared between states), else the state's own cache."""
    env = os.environ.get("FXSTACK_CACHE")
    return Path(env).resolve() if env else state / "cache"


def _skip_app(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name == "__pycache__" or name.endswith((".pyc", ".pyo")) or name.startswith(".")


@dataclass
class Builder:
    root: Path = field(default_factory=repo_root)
    state: Path = field(default_factory=state_dir)
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True)
    update_debian_lock: bool = False
    # --frozen / FXSTACK_FROZEN=1: a Debian lock that no longer installs stops the build
    # instead of being re-resolved and rewritten.
    frozen: bool = field(default_factory=lambda: os.environ.get("FXSTACK_FROZEN", "") not in ("", "0"))
    compile_bytecode: bool = True
    cache: Path | None = None

    def __post_init__(self) -> None:
        self.specs = load_specs(self.root)
        self._lock: PoetryLock | None = None
        self._plan_inputs: str | None = None
        cache = self.cache or cache_dir(self.state)
        # The exact bytes the package layers follow from. A pair the checks passed once is
        # recorded (cache/plans), so a rebuild skips parsing a lock it already knows; any
        # other pair is parsed and checked here, before anything is written.
        self._sources = [hashlib.sha256((self.root / f).read_bytes()).hexdigest()
                         if (self.root / f).is_file() else None for f in ("poetry.lock", "pyproject.toml")]
        checked_key = inputs_key("lock-checked", self._sources)
        known = (cache / "plans" / f"{checked_key}.json").is_file()
        if not known:
            self.lock  # noqa: B018 (raises on a stale or broken lock)
        self.store = BlobStore(self.state / "oci")
        self.dists = DistCache(cache / "dist")
        self.sdist_wheels = cache / "sdist-wheels"
        self.trees = cache / "trees"
        self.layer_cache = KeyedCache(cache / "layers")
        self.plan_cache = KeyedCache(cache / "plans")
        self.rootfs_cache = KeyedCache(cache / "rootfs")
        self.debian_lock = DebianLock(self.root / "images" / "debian.lock")
        self.rootfs = RootfsBuilder(self.store, self.rootfs_cache, self.debian_lock, cache,
                                    frozen=self.frozen, update_lock=self.update_debian_lock, log=self.log)
        if not known:
            self.plan_cache.put(checked_key, {"poetry.lock": self._sources[0], "pyproject.toml": self._sources[1]})

    @property
    def lock(self) -> PoetryLock:
        """poetry.lock, parsed and checked against pyproject.toml on first use: a rebuild whose
        package layers are all known (see _cached_plan) never needs it."""
        if self._lock is None:
            from ..lock.poetry_lock import PoetryLock

            self._lock = PoetryLock(self.root / "poetry.lock", self.root / "pyproject.toml")
        return self._lock

    # -- selection ------------------------------------------------------------------

    def select(self, names: list[str] | None, *, include_gpu: bool = False) -> list[ImageSpec]:
        if names:
            unknown = [n for n in names if n not in self.specs]
            if unknown:
                raise FxError(f"no image named {', '.join(unknown)}", where="images/",
                              hint=f"images: {', '.join(self.specs)}")
            chosen = [self.specs[n] for n in names]
            for spec in chosen:
                if not spec.portable:
                    raise FxError(f"the portable builder cannot build {spec.name}: {spec.portable_reason}",
                                  where=f"{spec.path}: portable")
            return chosen
        return [s for s in self.specs.values() if s.portable and (include_gpu or not s.gpu)]

    # -- python package layers ------------------------------------------------------

    def _package_classes(self) -> tuple[dict[str, list[LockedFile]], list]:
        """Files per image and the layer classes, over every portable Python image.

        The classes are computed over all of them, not just the ones being built, so an
        image's layers do not depend on what else was asked for on the command line.
        """
        per_image = {s.name: self.lock.files_for(s.groups)
                     for s in self.specs.values() if s.kind == "python" and s.portable}
        classes = group_by_users({k: set(v) for k, v in per_image.items()}, MAX_LAYERS)
        return per_image, classes

    def _wheel_for(self, f: LockedFile) -> Path:
        path = self.dists.path(f)
        if f.is_wheel:
            return path
        return build_pure_wheel(path, f, self.sdist_wheels, self.log)

    def _trim(self, spec: ImageSpec) -> Trim | None:
        return Trim.from_spec(spec.trim, self.root)

    def _plan_key(self, name: str) -> str:
        """What decides an image's package layers: the exact bytes of poetry.lock and
        pyproject.toml, every Python image's groups (the layer classes span them all), how
        layers are made, and the image's trim rules and import profile. The lock passed its
        consistency checks when the entry was written."""
        if self._plan_inputs is None:
            groups = sorted((s.name, list(s.groups)) for s in self.specs.values()
                            if s.kind == "python" and s.portable)
            self._plan_inputs = inputs_key(
                BUILDER_VERSION, TREE_VERSION, MAX_LAYERS, self.compile_bytecode,
                sys.version_info[:2] if self.compile_bytecode else None, groups, self._sources)
        trim = self._trim(self.specs[name])
        return inputs_key("plan", name, self._plan_inputs, *([trim.key] if trim else []))

    def _cached_plan(self, chosen: list[ImageSpec]) -> dict[str, list[oci.Layer]] | None:
        """The package layers of every chosen Python image, when a build from the same lock
        recorded them and the store still holds them all; else None (the full walk)."""
        plan = {}
        for spec in chosen:
            if spec.kind != "python":
                continue
            hit = self.plan_cache.get(self._plan_key(spec.name))
            if hit is None or not all(self.store.has(l["digest"]) for l in hit["layers"]):
                return None
            plan[spec.name] = [oci.Layer(l["digest"], l["size"], l["comment"]) for l in hit["layers"]]
        return plan

    def _package_layer(self, files: list[LockedFile], trim: Trim | None = None) -> tuple[oci.Layer, bool]:
        """One layer of installed packages; with `trim`, the same packages less the files it
        drops (a layer of the trimmed image only)."""
        key = inputs_key("packages", BUILDER_VERSION, TREE_VERSION, self.compile_bytecode,
                         sys.version_info[:2] if self.compile_bytecode else None,
                         [(f.name, f.version, f.sha256) for f in files],
                         *([trim.key] if trim else []))
        names = ", ".join(f.name for f in files[:4]) + (f" +{len(files) - 4}" if len(files) > 4 else "")
        if trim:
            names += " (trimmed)"
        hit = self.layer_cache.get(key)
        if hit and self.store.has(hit["digest"]):
            return oci.Layer(hit["digest"], hit["size"], f"packages: {names}"), True
        trees = []
        for f in files:
            wheel = self._wheel_for(f)
            trees.append(install_tree(wheel, tree_key(f, wheel, self.compile_bytecode), self.trees,
                                      compile_bytecode=self.compile_bytecode))
        entries = merge_entries(tree_entries(t, "", skip=trim.skipper(t) if trim else None)[1:]
                                for t in trees)
        with self.store.writer() as w:
            write_tar(entries, w)
        self.layer_cache.put(key, {"digest": w.digest, "size": w.size})
        self.log(f"  layer {w.digest[7:19]} {w.size / 1e6:8.1f} MB  packages: {names}")
        return oci.Layer(w.digest, w.size, f"packages: {names}"), False

    # -- app layer --------------------------------------------------------------------

    def _app_layer(self, spec: ImageSpec) -> oci.Layer | None:
        if not spec.app:
            return None
        groups: list[list[Entry]] = []
        for entry in spec.app:
            src = self.root / entry.src
            groups.append(tree_entries(src, entry.dest, skip=_skip_app))
        with self.store.writer() as w:
            write_tar(merge_entries(groups), w)
        return oci.Layer(w.digest, w.size, "app: " + ", ".join(a.src for a in spec.app))

    # -- images -----------------------------------------------------------------------

    def _recipe(self, spec: ImageSpec) -> RootfsRecipe:
        packages = tuple(spec.packages.get("debian", ()))
        # Run time keeps what the service, its entrypoint and its health checks run (runtime.py).
        if spec.kind == "python":
            return RootfsRecipe(packages, spec.user, spec.uid, owned_dirs=("/data",), root_dirs=("/app",),
                                runtime=runtime.PYTHON)
        return RootfsRecipe(packages, spec.user, spec.uid, owned_dirs=spec.volumes,
                            runtime=runtime.service_policy(packages))

    def build(self, names: list[str] | None = None, *, include_gpu: bool = False) -> list[BuiltImage]:
        with state_lock(self.state, exclusive=False):
            return self._build(names, include_gpu=include_gpu)

    def _build(self, names: list[str] | None, *, include_gpu: bool) -> list[BuiltImage]:
        chosen = self.select(names, include_gpu=include_gpu)
        plan = self._cached_plan(chosen)
        if plan is None:
            per_image, classes = ({}, []) if not any(s.kind == "python" for s in chosen) \
                else self._package_classes()
            needed = {f for s in chosen if s.kind == "python" for f in per_image[s.name]}
            self.dists.fetch(needed, self.log, self.lock.lock_path)
        built, refs = [], {}
        for spec in chosen:
            started = time.monotonic()
            self.log(f"{spec.name}: building")
            rootfs = self.rootfs.build(self._recipe(spec))
            layers = [oci.Layer(rootfs["digest"], rootfs["size"],
                                "debian: " + " ".join(spec.packages.get("debian", ())))]
            cached = 0
            if spec.kind == "python" and plan is not None:
                layers += plan[spec.name]
                cached = len(plan[spec.name])
            elif spec.kind == "python":
                packages = []
                trim = self._trim(spec)
                for files in layers_for(spec.name, classes):
                    layer, hit = self._package_layer(files, trim)
                    packages.append(layer)
                    cached += hit
                self.plan_cache.put(self._plan_key(spec.name), {"layers": [
                    {"digest": l.digest, "size": l.size, "comment": l.comment} for l in packages]})
                layers += packages
            app = self._app_layer(spec)
            if app:
                layers.append(app)
            digest, size = oci.write_image(self.store, spec, layers)
            refs[spec.name] = (digest, size)
            image = BuiltImage(spec.name, digest, layers, time.monotonic() - started, cached)
            built.append(image)
            self.log(f"{spec.name}: {image.ref}  {len(layers)} layers  {image.size / 1e6:.1f} MB"
                     f"  ({image.seconds:.1f}s)")
        oci.update_index(self.store, refs)
        in_use = {self._recipe(s).lock_key for s in self.specs.values() if s.portable}
        for key in self.debian_lock.retain(in_use):
            self.log(f"debian: dropped the lock entry [{key}]: no spec asks for that package set")
        if notice := self.rootfs.updates_notice():
            self.log(notice)
        self._hint_gc()
        return built

    def _hint_gc(self) -> None:
        """Old layers pile up unseen (every code change leaves one): say so once it is a lot."""
        limit = float(os.environ.get("FXSTACK_GC_HINT_GB", "20")) * 1e9
        held = sum(e.stat().st_size for e in os.scandir(self.store.blobs) if e.is_file())
        if held > limit:
            self.log(f"{self.store.root} holds {held / 1e9:.1f} GB of layers: `fxstack gc` removes "
                     "the ones no current image uses (FXSTACK_GC_HINT_GB sets this threshold)")
