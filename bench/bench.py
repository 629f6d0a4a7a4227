"""Benchmark: our builder against a Dockerfile baseline, side by side in one run.

Prints a table and writes JSON (default bench/results/latest.json). Not a test: nothing
here asserts; the targets are printed next to the measurements.

    ./fx bench                 # everything (about 40 minutes on 2 cores)
    ./fx bench --skip-baseline # our side only
    ./fx bench --quick         # every scenario on one small image, both sides (a few minutes)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from fxstack.image.builder import Builder, cache_dir  # noqa: E402
from fxstack.image.store import BlobStore  # noqa: E402
from fxstack.load.loader import docker_client, load_images  # noqa: E402
from fxstack.load.registry import LocalRegistry  # noqa: E402
from fxstack.paths import state_dir  # noqa: E402
from fxstack.stack.docker_state import free_port  # noqa: E402

import baseline  # noqa: E402

OURS_PY = ["fx-base", "fx-airflow-scheduler", "fx-airflow-webserver", "fx-airflow-worker",
           "fx-fastapi", "fx-mlflow"]
NEW_DEP = ("pyjokes", "0.6.0")  # small, pure Python, not otherwise in the lock


def quiet(_msg: str) -> None:
    pass


def copy_repo(dest: Path, source: Path = ROOT) -> Path:
    for part in ("images", "src", "pyproject.toml", "poetry.lock"):
        src = source / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dest / part)
    return dest


def timed(fn):
    started = time.monotonic()
    result = fn()
    return time.monotonic() - started, result


def relock(repo: Path, new_packages: list[str] = ()) -> None:
    """Re-lock the copy the way `poetry lock --no-update` does for a small change, without
    Poetry: every version already locked stays, each package of `new_packages` (a Poetry
    [[package]] table as text) goes in at its place in name order, and [metadata]
    content-hash becomes the hash Poetry 1.8 computes for the edited pyproject. Poetry's
    freshness test (Locker.is_fresh) compares exactly that hash, so Poetry accepts the
    result; PoetryLock, which refuses a stale lock, reads it back as the check."""
    import re
    import tomllib

    from fxstack.lock.poetry_lock import PoetryLock
    from fxstack.lock.pyproject import content_hash

    lock_path = repo / "poetry.lock"
    text = lock_path.read_text()
    for entry in new_packages:
        name = re.search(r'^name = "([^"]+)"', entry, re.M)[1]
        later = [m.start() for m in re.finditer(r'^\[\[package\]\]\nname = "([^"]+)"', text, re.M)
                 if m[1].lower() > name.lower()]
        at = later[0] if later else text.index("[metadata]\n")
        text = text[:at] + entry + "\n" + text[at:]
    poetry = tomllib.loads((repo / "pyproject.toml").read_text())["tool"]["poetry"]
    text, n = re.subn(r'^content-hash = "[0-9a-f]+"$', f'content-hash = "{content_hash(poetry)}"', text,
                      count=1, flags=re.M)
    if n != 1:
        raise RuntimeError(f"{lock_path}: no content-hash line to update")
    lock_path.write_text(text)
    PoetryLock(lock_path, repo / "pyproject.toml")


def add_to_group(repo: Path, group: str, name: str, version: str) -> None:
    py = repo / "pyproject.toml"
    head = f"[tool.poetry.group.{group}.dependencies]\n"
    text = py.read_text()
    if head not in text:
        text += f"\n[tool.poetry.group.{group}]\noptional = true\n{head}"
    py.write_text(text.replace(head, f'{head}{name} = "{version}"\n'))


def add_dependency(repo: Path, group: str) -> None:
    """Add NEW_DEP to `group` as a user does: a pyproject entry, then a re-lock that pins
    its real file hash."""
    name, version = NEW_DEP
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", tmp,
                        f"{name}=={version}"], check=True, capture_output=True)
        (wheel,) = Path(tmp).glob("*.whl")
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    add_to_group(repo, group, name, version)
    relock(repo, [f'[[package]]\nname = "{name}"\nversion = "{version}"\ndescription = ""\n'
                  f'optional = false\npython-versions = "*"\nfiles = [\n'
                  f'    {{file = "{wheel.name}", hash = "sha256:{digest}"}},\n]\n'])


def unique_bytes(builder: Builder, images) -> tuple[int, int]:
    seen, total = {}, 0
    for im in images:
        for layer in im.layers:
            seen[layer.digest] = layer.size
            total += layer.size
    return sum(seen.values()), total


def drift_cost(work: Path, source: Path) -> dict:
    """What a Debian drift re-resolve adds to a cold build: the redis image from empty state,
    once from its lock as committed, once with one locked version gone from the mirror (the
    default build re-resolves the package set, prints the table and rewrites the lock)."""
    out = {}
    for case in ("from_lock", "drifted"):
        repo = copy_repo(work / f"drift-{case}", source)
        if case == "drifted":
            lock_path = repo / "images" / "debian.lock"
            doc = json.loads(lock_path.read_text())
            entry = doc["rootfs"]["redis-server tini"]["packages"]["tini"]
            entry["version"] += "+gone"
            entry["sha256"] = "0" * 64
            lock_path.write_text(json.dumps(doc, indent=1) + "\n")
        b = Builder(root=repo, state=work / f"drift-state-{case}", log=quiet)
        out[f"cold_redis_{case}_s"], _ = timed(lambda: b.build(["redis"]))
    out["drift_resolve_adds_s"] = out["cold_redis_drifted_s"] - out["cold_redis_from_lock_s"]
    return out


QUICK_IMAGE = "bench-mini"
QUICK_GROUP = "bench-mini"
# The quick mode's image: the base image's root filesystem, one small locked package and
# one app directory, so every scenario (code change included) runs in a couple of minutes.
QUICK_SPEC = """\
name = "bench-mini"
description = "benchmark quick mode: a small image that every scenario can run on"
kind = "python"
groups = ["bench-mini"]
user = "fxuser"
uid = 1000
workdir = "/app"
app = [{ src = "src/fxservices/inference", dest = "/app/fxservices/inference" }]
cmd = ["python3", "-c", "import dotenv"]

[packages]
debian = DEBIAN
"""
# What a quick run takes from the checkout's own cache: downloads (wheels, .debs, the apt
# index) everywhere, and for the Python image's builds its root filesystem, which mmdebstrap
# would spend most of a quick run on; the drift scenario still builds redis's from the lock.
DOWNLOAD_CACHES = ("dist", "debs", "apt")
SHARED_STATE = state_dir()
SHARED_CACHE = cache_dir(SHARED_STATE)


def add_quick_image(repo: Path) -> None:
    import tomllib

    base = tomllib.loads((repo / "images" / "fx-base.toml").read_text())
    debian = "[" + ", ".join(f'"{p}"' for p in base["packages"]["debian"]) + "]"
    (repo / "images" / f"{QUICK_IMAGE}.toml").write_text(QUICK_SPEC.replace("DEBIAN", debian))
    add_to_group(repo, QUICK_GROUP, "python-dotenv", "1.0.0")
    relock(repo)


def seed_caches(state: Path, *, rootfs: bool) -> None:
    cache = state / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    for name in DOWNLOAD_CACHES + (("rootfs",) if rootfs else ()):
        (SHARED_CACHE / name).mkdir(parents=True, exist_ok=True)
        if not (cache / name).exists():
            (cache / name).symlink_to(SHARED_CACHE / name)
    if rootfs:
        shared, own = BlobStore(SHARED_STATE / "oci"), BlobStore(state / "oci")
        for record in (SHARED_CACHE / "rootfs").glob("*.json"):
            digest = json.loads(record.read_text())["digest"]
            if shared.has(digest) and not own.has(digest):
                os.link(shared.path(digest), own.path(digest))


def one_line_change(repo: Path, n: int) -> Path:
    app = repo / "src/fxservices/inference/app.py"
    app.write_text(app.read_text() + f"\n# benchmark: one-line change {n}\n")
    return app


def median(values: list[float]) -> float:
    values = sorted(values)
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def compile_fxstack() -> None:
    """Byte-code for the fxstack package, as the first `fxstack` run in a developer's shell
    writes it. Where PYTHONDONTWRITEBYTECODE is set (as in some CI environments) no run writes
    it, and every timed run below would compile some forty modules again (about 80 ms, a
    quarter of the process), which is not what a developer waits for."""
    import compileall

    import fxstack

    compileall.compile_dir(Path(fxstack.__file__).parent, quiet=1)


def cli_reload(repo: Path, state: Path, image: str, port: int) -> float:
    """`fxstack build IMAGE --load` as a whole process, as a developer runs it."""
    env = dict(os.environ, FXSTACK_ROOT=str(repo), FXSTACK_STATE=str(state),
               FXSTACK_REGISTRY_PORT=str(port))
    started = time.monotonic()
    proc = subprocess.run([str(Path(sys.executable).with_name("fxstack")), "build", image, "--load"],
                          env=env, capture_output=True, text=True)
    took = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"fxstack build {image} --load failed:\n{proc.stderr[-2000:]}")
    return took


def main() -> int:
    try:
        return run()
    finally:
        # Nothing of the benchmark's own stays in Docker: each run's baseline rebuilds would
        # otherwise leave a dangling image per code change, every `./fx check` a few more.
        removed = baseline.remove_images()
        client = docker_client()
        for image in client.images.list(name=QUICK_IMAGE):
            client.images.remove(image.id, force=True)
            removed += 1
        print(f"removed {removed} benchmark images from Docker", file=sys.stderr)


def run() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    ap.add_argument("--work", help="scratch directory (default: a new temp dir)")
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--only-drift", action="store_true", help="measure only the Debian drift re-resolve")
    ap.add_argument("--quick", action="store_true",
                    help=f"every scenario on one small image ({QUICK_IMAGE}); downloads and its root"
                         " filesystem come from the checkout's state (what ./fx check runs)")
    ap.add_argument("--repeat", type=int, default=None, help="runs per whole-process timing (median)")
    args = ap.parse_args()
    repeat = args.repeat or (3 if args.quick else 5)
    work = Path(args.work or tempfile.mkdtemp(prefix="fxbench-"))
    work.mkdir(parents=True, exist_ok=True)
    # Cold means cold: no pip http cache for either side, no shared layer cache for ours.
    os.environ["PIP_NO_CACHE_DIR"] = "1"
    os.environ.pop("FXSTACK_CACHE", None)
    # One snapshot of the checkout, taken now: the second clean build must see the same
    # sources as the first even if the checkout is edited while the benchmark runs.
    pristine = copy_repo(work / "pristine")
    if args.quick:
        add_quick_image(pristine)
        names, dep_group, changed = [QUICK_IMAGE], QUICK_GROUP, QUICK_IMAGE
        for state in ("state-a", "state-b"):
            seed_caches(work / state, rootfs=True)
        for state in ("drift-state-from_lock", "drift-state-drifted"):
            seed_caches(work / state, rootfs=False)
    else:
        names, dep_group, changed = None, "fastapi", "fx-fastapi"
    py_names = names or OURS_PY
    repo = copy_repo(work / "repo", pristine)
    results: dict = {"work": str(work), "mode": "quick" if args.quick else "full",
                     "ours": {}, "baseline": {}, "images": {}}
    ours, base = results["ours"], results["baseline"]

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    log("== Debian drift: cold build of redis from the lock vs with a locked version gone")
    ours.update(drift_cost(work, pristine))
    log(f"   re-resolve adds {ours['drift_resolve_adds_s']:.1f}s")
    if args.only_drift:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2, sort_keys=True))
        print(json.dumps({k: round(v, 1) for k, v in ours.items()}, indent=1))
        return 0

    # 1. cold build ---------------------------------------------------------------------------
    log(f"== ours: cold build of {', '.join(py_names) if names else 'the CPU set'} (empty caches)")
    a = Builder(root=repo, state=work / "state-a", log=quiet)
    ours["cold_build_s"], built_a = timed(lambda: a.build(names))
    log(f"   {ours['cold_build_s']:.1f}s")
    if not args.skip_baseline:
        log(f"== baseline: docker build --no-cache of {', '.join(py_names)}")
        contexts = baseline.prepare(a, repo, work / "baseline", py_names)
        base["cold_build_s"] = sum(baseline.docker_build(contexts[n], f"fxbench/{n}:1", no_cache=True)
                                   for n in py_names)
        first_ids = {n: baseline.image_id(f"fxbench/{n}:1") for n in py_names}
        log(f"   {base['cold_build_s']:.1f}s")

    # 2. no-op rebuild ----------------------------------------------------------------------
    ours["noop_rebuild_s"], _ = timed(lambda: Builder(root=repo, state=work / "state-a", log=quiet).build(names))
    if not args.skip_baseline:
        # The legacy builder does not offer `--no-cache` results as cache: one plain build
        # first (untimed), as a developer's machine would have, then the timed no-op.
        for n in py_names:
            baseline.docker_build(contexts[n], f"fxbench/{n}:1")
        base["noop_rebuild_s"] = sum(baseline.docker_build(contexts[n], f"fxbench/{n}:1") for n in py_names)

    # 3. initial load into Docker (ours) ------------------------------------------------------
    # A registry of the benchmark's own (not whatever answers on 5555), so the reload numbers
    # below do not depend on what an earlier run left there. dockerd may already hold these
    # exact images (the builds are reproducible): then this step only fills the registry.
    registry = LocalRegistry(work / "state-a", port=free_port())
    client = docker_client()
    ours["images_already_in_docker"] = sum(
        bool(client.images.list(name=im.ref)) for im in built_a)
    ours["initial_load_s"], _ = timed(lambda: load_images(a, built_a, log=quiet, registry=registry))

    try:
        # 4. one-line code change in the inference API -----------------------------------------
        def ours_reload():
            b = Builder(root=repo, state=work / "state-a", log=quiet)
            images = b.build([changed])
            load_images(b, images, log=quiet, registry=registry)
            return images
        one_line_change(repo, 0)
        ours["code_change_rebuild_reload_s"], _ = timed(ours_reload)
        # the same as a whole `fxstack` process (imports, spec and lock reading included)
        compile_fxstack()
        runs = []
        for n in range(1, repeat + 1):
            one_line_change(repo, n)
            runs.append(cli_reload(repo, work / "state-a", changed, registry.port))
        ours["code_change_cli_runs_s"] = runs
        ours["code_change_cli_s"] = median(runs)
        if not args.skip_baseline:
            runs = []
            for n in range(repeat + 1, 2 * repeat + 1):
                app = one_line_change(repo, n)
                shutil.copy(app, contexts[changed] / "src/fxservices/inference/app.py")
                runs.append(baseline.docker_build(contexts[changed], f"fxbench/{changed}:1"))
            base["code_change_rebuild_runs_s"] = runs
            base["code_change_rebuild_s"] = median(runs)

        # 5. one added dependency ----------------------------------------------------------------
        add_dependency(repo, dep_group)
        ours["add_dependency_rebuild_reload_s"], _ = timed(ours_reload)
        if not args.skip_baseline:
            b = Builder(root=repo, state=work / "state-a", log=quiet)
            (contexts[changed] / "requirements.txt").write_text(
                baseline.export_requirements(b.lock, list(b.specs[changed].groups)))
            base["add_dependency_rebuild_s"] = baseline.docker_build(contexts[changed], f"fxbench/{changed}:1")
    finally:
        registry.stop()
    # undo both changes for the reproducibility builds
    shutil.rmtree(work / "repo")
    repo = copy_repo(work / "repo", pristine)

    # 6. reproducibility: a second clean build elsewhere ------------------------------------
    log("== ours: second clean build in another directory")
    b_builder = Builder(root=repo, state=work / "state-b", log=quiet)
    ours["second_cold_build_s"], built_b = timed(lambda: b_builder.build(names))
    digests_a = {im.name: im.manifest_digest for im in built_a}
    digests_b = {im.name: im.manifest_digest for im in built_b}
    ours["identical_digests"] = sum(digests_a[n] == digests_b[n] for n in digests_a)
    ours["images_compared"] = len(digests_a)
    if not args.skip_baseline:
        again = [n for n in ("fx-base", "fx-fastapi") if n in py_names] or py_names
        log(f"== baseline: second --no-cache build of {', '.join(again)}")
        for n in again:
            (contexts[n] / "requirements.txt").write_text(
                baseline.export_requirements(b_builder.lock, list(b_builder.specs[n].groups)))
            # the contexts as they were at the first build: the changes above are undone
            app = contexts[n] / "src/fxservices/inference/app.py"
            if app.exists():
                shutil.copy(repo / "src/fxservices/inference/app.py", app)
            baseline.docker_build(contexts[n], f"fxbench/{n}:2", no_cache=True)
        base["identical_digests"] = sum(first_ids[n] == baseline.image_id(f"fxbench/{n}:2") for n in again)
        base["images_compared"] = len(again)

    # 7. sizes -------------------------------------------------------------------------------
    for im in built_a:
        row = {"ours_bytes": im.size, "layers": len(im.layers), "digest": im.manifest_digest}
        if not args.skip_baseline and im.name in py_names:
            row["baseline_bytes"] = baseline.image_size(f"fxbench/{im.name}:1")
        results["images"][im.name] = row
    own = [im for im in built_a if im.name in py_names]
    ours["unique_bytes_own"], ours["sum_bytes_own"] = unique_bytes(a, own)
    ours["unique_bytes_cpu_set"], ours["sum_bytes_cpu_set"] = unique_bytes(a, built_a)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, sort_keys=True))
    print_table(results)
    print(f"\nJSON: {out}")
    return 0


def print_table(r: dict) -> None:
    o, b = r["ours"], r["baseline"]

    def s(v):
        return "-" if v is None else f"{v:.2f}s" if v < 10 else f"{v:.1f}s"

    def ratio(x, y):
        return "-" if not x or not y else f"{y / x:.1f}x"
    rows = [
        ("cold build, " + ("bench-mini (rootfs shared)" if r.get("mode") == "quick" else "CPU set"),
         o.get("cold_build_s"), b.get("cold_build_s"), ""),
        ("no-op rebuild", o.get("noop_rebuild_s"), b.get("noop_rebuild_s"), "< 2 s"),
        (f"initial load ({o.get('images_already_in_docker', '?')} images already in Docker)",
         o.get("initial_load_s"), None, ""),
        ("1-line change: rebuild+reload (in process)", o.get("code_change_rebuild_reload_s"),
         b.get("code_change_rebuild_s"), "faster than baseline"),
        ("1-line change: `fxstack build --load`", o.get("code_change_cli_s"),
         b.get("code_change_rebuild_s"), "< 0.3 s, whole process (median)"),
        ("+1 dependency: re-lock, rebuild+reload", o.get("add_dependency_rebuild_reload_s"),
         b.get("add_dependency_rebuild_s"), ">= 5x faster"),
        ("cold build of redis from the Debian lock", o.get("cold_redis_from_lock_s"), None, ""),
        ("the same after the mirror dropped a pin", o.get("cold_redis_drifted_s"), None,
         "re-resolve adds " + s(o.get("drift_resolve_adds_s"))),
    ]
    print(f"\n{'measure':44} {'ours':>9} {'baseline':>9} {'speed-up':>9}  target")
    for name, x, y, target in rows:
        print(f"{name:44} {s(x):>9} {s(y):>9} {ratio(x, y):>9}  {target}")
    print(f"{'identical digests over two clean builds':44} {o['identical_digests']}/{o['images_compared']:<7}"
          f" {str(b.get('identical_digests', '-')) + '/' + str(b.get('images_compared', '-')):>9}")
    print(f"\n{'image':24} {'layers':>6} {'ours MB':>9} {'baseline MB':>12}")
    for name, row in sorted(r["images"].items()):
        bb = row.get("baseline_bytes")
        print(f"{name:24} {row['layers']:6d} {row['ours_bytes'] / 1e6:9.1f} "
              f"{(bb / 1e6 if bb else float('nan')):12.1f}")
    print(f"\nunique bytes, own Python images: {o['unique_bytes_own'] / 1e9:.2f} GB "
          f"(sum of image sizes {o['sum_bytes_own'] / 1e9:.2f} GB; full run: target < 3.1 GB unique)")
    print(f"unique bytes, whole CPU set:      {o['unique_bytes_cpu_set'] / 1e9:.2f} GB "
          f"(sum {o['sum_bytes_cpu_set'] / 1e9:.2f} GB)")


if __name__ == "__main__":
    sys.exit(main())
