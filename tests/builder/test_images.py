"""The built images, loaded into the real dockerd and run."""

from __future__ import annotations

import json
import os
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from fxstack.image.builder import Builder
from fxstack.errors import FxError
from fxstack.stack.docker_state import free_port

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.integration

IMPORTS = {
    "fx-base": "pandas, numpy, sklearn, pydantic, yaml, dotenv, requests",
    "fx-airflow-scheduler": "airflow, airflow.providers.postgres, airflow.providers.redis, "
                            "airflow.providers.celery, celery, feast, mlflow, xgboost, prometheus_client",
    "fx-airflow-webserver": "airflow, flask_appbuilder, airflow.providers.celery",
    "fx-airflow-worker": "airflow, celery, feast, mlflow, xgboost, fxservices.pipeline",
    "fx-fastapi": "fastapi, uvicorn, gunicorn, feast, mlflow, redis, xgboost, prometheus_client, "
                  "fxservices.inference",
    "fx-mlflow": "mlflow.server, psycopg2, boto3, prometheus_flask_exporter",
}


def run(client, ref, command, **kw):
    """The command's output; the container goes with its anonymous volumes (the SDK's
    remove=True keeps those of images that declare VOLUME, one per run)."""
    c = client.containers.run(ref, command, detach=True, **kw)
    try:
        status = c.wait()
        out = c.logs(stdout=True, stderr=True)
        if status.get("StatusCode"):
            import docker.errors

            raise docker.errors.ContainerError(c, status["StatusCode"], command, ref, out)
        return out.decode()
    finally:
        c.remove(force=True, v=True)


@pytest.mark.parametrize("name", sorted(IMPORTS))
def test_python_image_imports_as_uid_1000(cpu_images, docker_client, name):
    _, images = cpu_images
    code = f"import os, {IMPORTS[name]}; print('uid', os.getuid(), os.getgid())"
    out = run(docker_client, images[name].ref, ["python3", "-c", code])
    assert out.strip().endswith("uid 1000 1000"), out


@pytest.mark.parametrize("name", sorted(IMPORTS))
def test_python_image_has_tini_and_no_compilers(cpu_images, docker_client, name):
    _, images = cpu_images
    out = run(docker_client, images[name].ref, ["sh", "-c",
              "tr '\\0' ' ' </proc/1/cmdline; echo; for t in gcc cc g++ curl wget; do"
              " command -v $t || true; done; stat -c '%U %a' /data /app"])
    first, *rest = out.strip().splitlines()
    assert first.startswith("/usr/bin/tini --")
    assert rest == ["fxuser 755", "root 755"], rest


# Imports every compiled extension module of an image's site-packages, to prove the builder's
# `strip --strip-unneeded` broke none. A damaged ELF file says "ELF", "undefined symbol" or
# "file too short"; a library that is missing from the image altogether (libcuda for
# pyarrow._cuda) is the wheel's own optional dependency, not damage.
IMPORT_ALL_EXTENSIONS = r"""
import importlib, os, re, sys
site = "/usr/local/lib/python3.11/dist-packages"
present = set()
for top in (site, "/usr/lib", "/lib"):
    for root, _, files in os.walk(top):
        present.update(files)
tried, broken = 0, []
for root, _, files in sorted(os.walk(site)):
    for f in sorted(files):
        m = re.match(r"([A-Za-z_][A-Za-z0-9_]*)\.(cpython-311-x86_64-linux-gnu|abi3)\.so$", f)
        parts = os.path.relpath(root, site).split(os.sep)
        if not m or not all(p.isidentifier() for p in parts if p != "."):
            continue
        name = ".".join([p for p in parts if p != "."] + [m.group(1)])
        tried += 1
        try:
            importlib.import_module(name)
        except BaseException as exc:
            text = str(exc)
            missing = re.match(r"(\S+): cannot open shared object file", text)
            if missing and missing.group(1) not in present:
                continue
            if re.search(r"ELF|undefined symbol|file too short|cannot open shared object", text):
                broken.append(f"{name}: {text}")
print("tried", tried)
print("broken", broken)
"""


# Issue 9: a runtime root filesystem holds no package tools (fxstack/image/runtime.py purges
# them after the locked install), while what entrypoints and health checks run stays. Perl goes
# from postgres too: only postgresql-common's cluster tools ran it (runtime.EXCEPTIONS).
PACKAGE_TOOLS = ["apt", "apt-get", "dpkg", "dpkg-query", "dpkg-deb", "update-alternatives", "perl",
                 "debconf", "login", "su", "useradd", "tar", "find"]
RUNTIME_TOOLS = ["sh", "bash", "cat", "grep", "head", "touch", "tini"]
# Every ELF file of the system directories resolves its libraries: nothing purged is still linked.
LINKS = r"""
for f in /usr/bin/* /usr/sbin/* /usr/lib/x86_64-linux-gnu/*.so* /usr/lib/x86_64-linux-gnu/*/*.so* \
         /usr/lib/python3*/lib-dynload/*.so /usr/lib/postgresql/*/bin/* /usr/lib/postgresql/*/lib/*.so \
         /usr/lib/chromium/chromium; do
  [ -f "$f" ] || continue
  # systemd's private libraries are found through the RUNPATH of systemd's own programs
  case "$f" in /usr/lib/x86_64-linux-gnu/systemd/*) continue ;; esac
  ldd "$f" 2>/dev/null | grep -q 'not found' && echo "unresolved: $f: $(ldd "$f" | grep 'not found' | tr -s ' \n\t' ' ')"
done
echo checked
"""
LINKS_START = "--- links ---"


def test_runtime_rootfs_has_no_package_tools_and_links_completely(cpu_images, docker_client):
    _, images = cpu_images
    tools = (f"for t in {' '.join(PACKAGE_TOOLS)}; do command -v $t; done;"
             f" for t in {' '.join(RUNTIME_TOOLS)}; do command -v $t >/dev/null || echo missing $t; done; true")

    def check(name: str) -> list[str]:
        # one container per image for both checks, the links' part after a line of its own
        out = run(docker_client, images[name].ref, ["-c", f"{tools}\necho {LINKS_START}\n{LINKS}"],
                  entrypoint=["/bin/sh"], user="0")
        found, _, links = out.partition(f"{LINKS_START}\n")
        assert links.strip().endswith("checked"), (name, out)
        return [f"{name}: {line}" for line in found.splitlines() if line.strip()] + \
            [f"{name}: {line}" for line in links.splitlines() if line.startswith("unresolved")]

    # ldd over every ELF file of 15 images: two containers at a time keep both cores busy
    with ThreadPoolExecutor(2) as pool:
        problems = [line for lines in pool.map(check, sorted(images)) for line in lines]
    assert problems == []


# fx-fastapi keeps the scikit-learn and SciPy extension modules its service loads (its `trim`)
@pytest.mark.parametrize("name, at_least", [("fx-fastapi", 200), ("fx-mlflow", 200),
                                             ("fx-airflow-scheduler", 200)])
def test_stripped_extension_modules_all_load(cpu_images, docker_client, name, at_least):
    builder, images = cpu_images
    out = run(docker_client, images[name].ref, ["python3", "-c", IMPORT_ALL_EXTENSIONS],
              environment={"FEAST_USAGE": "False"})
    lines = out.strip().splitlines()
    assert int(lines[-2].split()[1]) > at_least, out[-2000:]  # scipy, sklearn, pandas, ...
    assert lines[-1] == "broken []", lines[-1]
    if name != "fx-fastapi":
        return
    # and they were stripped: no static symbol table left in uvloop's loop module (12 MB of
    # debug info as shipped), no C sources or Cython files anywhere
    import subprocess

    from fxstack.image.settings import TREE_VERSION

    (tree,) = [t for t in builder.trees.glob(f"*-uvloop-*-t{TREE_VERSION}c") if t.is_dir()]
    (loop_so,) = tree.rglob("loop.cpython-311-x86_64-linux-gnu.so")
    sections = subprocess.run(["readelf", "-S", "-W", str(loop_so)], capture_output=True,
                              text=True, check=True).stdout
    assert ".dynsym" in sections and ".symtab" not in sections and ".debug_info" not in sections
    assert not list(tree.rglob("*.pyx")) and not list(tree.rglob("*.c"))


# fx-fastapi's `trim` (images/fx-fastapi.toml): every module its service imports (the import
# profile) still imports in the built image, and what the rules drop is gone.
IMPORT_PROFILE = r"""
import base64, importlib, os, re, sys, zlib
paths = zlib.decompress(base64.b64decode(sys.argv[1])).decode().split()  # one argument is at most 128 KiB
failed = []
for p in paths:
    mod = re.sub(r"(/__init__)?(\.py|\.cpython-311-x86_64-linux-gnu\.so|\.abi3\.so)$", "", p).replace("/", ".")
    if not all(part.isidentifier() for part in mod.split(".")):
        continue
    try:
        importlib.import_module(mod)
    except Exception as exc:
        failed.append(f"{mod}: {type(exc).__name__}: {exc}")
try:
    import pyarrow.flight
    flight = "imports"
except ImportError:
    flight = "gone"
site = "/usr/local/lib/python3.11/dist-packages"
print("imported", len(paths) - len(failed), "flight", flight)
print("present", [f for f in ("pyarrow/libarrow_flight.so.1700", "feast/ui/build/index.html", "mlflow/pypi_package_index.json",
                              "pygments/__pycache__/lexer.cpython-311.pyc")
                  if os.path.exists(f"{site}/{f}")])
print("kept", all(os.path.exists(f"{site}/{f}") for f in ("pandas/core/__pycache__/frame.cpython-311.pyc",
                                                          "pygments/lexer.py", "pyarrow/libarrow_substrait.so.1700")))
print("failed", failed)
"""


def test_fx_fastapi_is_trimmed_and_imports_what_its_service_imports(cpu_images, docker_client):
    from fxstack.image.trim import read_profile

    _, images = cpu_images
    api = images["fx-fastapi"]
    assert api.size <= 450e6, f"fx-fastapi is {api.size / 1e6:.1f} MB (issue 18: at most 450 MB)"
    profile = sorted(read_profile(ROOT / "images/profiles/fx-fastapi.imports"))
    import base64
    import zlib

    packed = base64.b64encode(zlib.compress(" ".join(profile).encode())).decode()
    out = run(docker_client, api.ref, ["python3", "-c", IMPORT_PROFILE, packed],
              environment={"FEAST_USAGE": "False"}, working_dir="/app")
    lines = out.strip().splitlines()
    assert lines[-1] == "failed []", lines[-1][:3000]
    assert lines[-4].startswith("imported ") and int(lines[-4].split()[1]) > 2000, lines[-4]
    assert lines[-4].endswith("flight gone") and lines[-3] == "present []", lines[-4:]
    assert lines[-2] == "kept True"


def test_airflow_images_share_every_layer(cpu_images):
    builder, images = cpu_images
    layers = {n: [l.digest for l in images[n].layers] for n in
              ("fx-airflow-scheduler", "fx-airflow-webserver", "fx-airflow-worker")}
    assert len({tuple(v) for v in layers.values()}) == 1
    cmds = {json.loads(builder.store.path(json.loads(builder.store.path(images[n].manifest_digest)
            .read_bytes())["config"]["digest"]).read_bytes())["config"]["Cmd"][1] for n in layers}
    assert cmds == {"scheduler", "webserver", "celery"}


def test_python_images_share_rootfs_and_base_layers(cpu_images):
    _, images = cpu_images
    api, worker, base, mlflow = (images[n].layers for n in ("fx-fastapi", "fx-airflow-worker", "fx-base",
                                                            "fx-mlflow"))
    assert api[0].digest == worker[0].digest == base[0].digest      # one Debian root filesystem
    shared = {l.digest for l in mlflow} & {l.digest for l in worker}
    assert len(shared) >= 3                                          # rootfs + shared package layers
    # fx-fastapi is trimmed (its spec's `trim`): the same packages per layer as the shared
    # layers, fewer files, so only the layers its rules leave whole are shared
    assert all(l.comment.endswith("(trimmed)") for l in api if l.comment.startswith("packages:"))


def test_noop_rebuild_reuses_every_layer(cpu_images):
    builder, images = cpu_images
    again = {im.name: im for im in Builder(log=lambda m: None).build()}
    for name, im in images.items():
        assert again[name].manifest_digest == im.manifest_digest
        package_layers = sum(l.comment.startswith("packages:") for l in im.layers)
        assert again[name].cached_layers == package_layers


def test_code_change_rebuilds_only_the_app_layer(cpu_images, tmp_path):
    builder, images = cpu_images
    copy = tmp_path / "repo"
    for part in ("images", "src", "pyproject.toml", "poetry.lock"):
        src = ROOT / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, copy / part)
    app = copy / "src/fxservices/inference/app.py"
    # A line no earlier run wrote, so the registry cannot already hold this app layer.
    line = f"# a one-line change {time.time_ns()}"
    app.write_text(app.read_text() + "\n" + line + "\n")
    copy_builder = Builder(root=copy, state=builder.state, log=lambda m: None)
    changed = copy_builder.build(["fx-fastapi"])[0]
    before = [l.digest for l in images["fx-fastapi"].layers]
    after = [l.digest for l in changed.layers]
    assert before[:-1] == after[:-1] and before[-1] != after[-1]
    # Reloading copies only what Docker and the registry lack: the app layer and the config.
    # A registry of its own, empty, while dockerd already holds the unchanged image (as after
    # a fresh clone on a machine that built it before): `load_images` must fill the registry
    # anyway, or this reload would upload every layer the registry lacks (CI once saw 75 MB).
    from fxstack.load.engine import Engine
    from fxstack.load.loader import docker_client, load_images, load_via_registry
    from fxstack.load.registry import LocalRegistry

    registry = LocalRegistry(tmp_path / "state", port=free_port())
    original = images["fx-fastapi"]
    assert not registry.holds(builder.store, original.manifest_digest)
    try:
        messages = []
        load_images(builder, [original], log=messages.append, registry=registry)
        assert any("copied into the local registry" in m for m in messages), messages
        assert registry.holds(builder.store, original.manifest_digest)
        manifest = json.loads(copy_builder.store.path(changed.manifest_digest).read_bytes())
        loaded = load_via_registry(copy_builder, changed, Engine(), registry, lambda m: None)
    finally:
        registry.stop()
    assert loaded.uploaded == changed.layers[-1].size + manifest["config"]["size"]
    assert loaded.pulled_layers == 1
    out = run(docker_client(), changed.ref, ["python3", "-c",
              "print(open('/app/fxservices/inference/app.py').read().splitlines()[-1])"])
    assert out.strip() == line



def test_two_loads_of_one_image_at_once_both_succeed(cpu_images, docker_client):
    """Two loads of an image Docker lacks, at once (two `fxstack load`, two test processes): both
    pulled it from the local registry under one temporary name, and the second's removal of that
    name failed with dockerd's 404. redis-exporter: no test of the other processes uses it."""
    from fxstack.load.loader import load_images

    builder, images = cpu_images
    image = images["redis-exporter"]
    docker_client.images.remove(image.ref)
    messages: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        loads = [pool.submit(load_images, builder, [image], log=messages.append) for _ in range(2)]
        results = [load.result() for load in loads]
    assert results == [{"redis-exporter": image.ref}] * 2, messages
    assert docker_client.images.get(image.ref).attrs["RepoTags"], messages
    assert sum("already in Docker" in m for m in messages) == 1, messages  # the second waited for the first


def test_a_reload_after_a_code_change_sends_only_the_new_layer(cpu_images, docker_client, tmp_path):
    """load_images after a code change: dockerd holds the image loaded last under the name, so
    one docker-archive with the config and the app layer is all that travels (no registry)."""
    import re

    from fxstack.load.loader import load_images, write_images_env

    builder, images = cpu_images
    state = tmp_path / "state"
    shutil.copytree(builder.state / "oci", state / "oci", copy_function=os.link)
    write_images_env(state, {"fx-fastapi": images["fx-fastapi"].ref})  # what the last load wrote
    copy = tmp_path / "repo"
    for part in ("images", "src", "pyproject.toml", "poetry.lock"):
        src = ROOT / part
        (shutil.copytree if src.is_dir() else shutil.copy)(src, copy / part)
    app = copy / "src/fxservices/inference/app.py"
    line = f"# a reload of one layer {time.time_ns()}"
    app.write_text(app.read_text() + "\n" + line + "\n")
    b = Builder(root=copy, state=state, log=lambda m: None, cache=builder.dists.root.parent)
    changed = b.build(["fx-fastapi"])[0]
    messages: list[str] = []
    try:
        load_images(b, [changed], log=messages.append)
        sent = [float(m[1]) for m in (re.search(r"\(([0-9.]+) MB sent", m) for m in messages) if m]
        assert sent and sent[0] < 1.0, messages  # the image is 500+ MB; its app layer ~0.1 MB
        assert not (state / "registry").exists(), "the reload went through the registry"
        out = run(docker_client, changed.ref, ["python3", "-c",
                  "print(open('/app/fxservices/inference/app.py').read().splitlines()[-1])"])
        assert out.strip() == line
    finally:
        docker_client.images.remove(changed.ref, noprune=False)

def wait_http(url, timeout=60, ok=lambda r: r.status_code == 200):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            r = requests.get(url, timeout=2)
            if ok(r):
                return r
            last = r.status_code
        except requests.RequestException as exc:
            last = exc
        time.sleep(0.5)
    raise AssertionError(f"{url} not ready: {last}")


@pytest.fixture
def network(docker_client):
    net = docker_client.networks.create(f"fxtest-{int(time.time() * 1000)}")
    yield net
    net.remove()


def start(client, ref, network=None, **kw):
    c = client.containers.run(ref, detach=True, network=network.name if network else None, **kw)
    return c


def test_postgres_initialises_two_databases(cpu_images, docker_client):
    _, images = cpu_images
    env = {"POSTGRES_PASSWORD": "pw-super", "AIRFLOW_DB_PASSWORD": "pw-air", "MLFLOW_DB_PASSWORD": "pw-ml"}
    c = start(docker_client, images["postgres"].ref, environment=env)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            code, out = c.exec_run(["pg_isready", "-h", "127.0.0.1", "-U", "postgres"])
            if code == 0:
                break
            time.sleep(1)
        assert code == 0, c.logs().decode()[-2000:]
        for role, pw in (("airflow", "pw-air"), ("mlflow", "pw-ml")):
            code, out = c.exec_run(["psql", "-h", "127.0.0.1", "-U", role, "-d", role, "-tAc",
                                    "select current_user, current_database()"],
                                   environment={"PGPASSWORD": pw})
            assert code == 0 and out.decode().strip() == f"{role}|{role}", out
        # LLVM is left out of the image (runtime.EXCEPTIONS): the server runs with jit=off, and a
        # query costly enough to be JIT-compiled under the default settings still runs
        code, out = c.exec_run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc", "show jit"],
                               environment={"PGPASSWORD": "pw-super"})
        assert code == 0 and out.decode().strip() == "off", out
        code, out = c.exec_run(["psql", "-h", "127.0.0.1", "-U", "postgres", "-tAc",
                                "set jit_above_cost = 0; select sum(i) from generate_series(1, 100000) i"],
                               environment={"PGPASSWORD": "pw-super"})
        assert code == 0 and out.decode().split()[-1] == "5000050000", out
        code, out = c.exec_run(["sh", "-c", "ls /usr/lib/x86_64-linux-gnu/ | grep -c LLVM; command -v perl"])
        assert out.decode().split() == ["0"], out
    finally:
        c.remove(force=True, v=True)


def test_redis_answers_ping_and_exporter_reports_it(cpu_images, docker_client, network):
    _, images = cpu_images
    redis = start(docker_client, images["redis"].ref, network, name=f"{network.name}-redis")
    port = free_port()
    exporter = start(docker_client, images["redis-exporter"].ref, network,
                     environment={"REDIS_ADDR": f"redis://{network.name}-redis:6379"},
                     ports={"9121/tcp": ("127.0.0.1", port)})
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            code, out = redis.exec_run(["redis-cli", "ping"])
            if out.strip() == b"PONG":
                break
            time.sleep(0.5)
        assert out.strip() == b"PONG"
        r = wait_http(f"http://127.0.0.1:{port}/metrics", ok=lambda r: "redis_up 1" in r.text)
        assert "redis_up 1" in r.text
    finally:
        exporter.remove(force=True, v=True)
        redis.remove(force=True, v=True)


def test_prometheus_ready(cpu_images, docker_client, tmp_path):
    _, images = cpu_images
    port = free_port()
    c = start(docker_client, images["prometheus"].ref, ports={"9090/tcp": ("127.0.0.1", port)})
    try:
        r = wait_http(f"http://127.0.0.1:{port}/-/ready")
        assert "Ready" in r.text
        # the web UI's JavaScript packages are left out (runtime.EXCEPTIONS); the HTTP API that
        # Grafana and the health checks read answers
        r = wait_http(f"http://127.0.0.1:{port}/api/v1/query?query=up")
        assert r.json()["status"] == "success"
        code, out = c.exec_run(["sh", "-c", "ls /usr/share/javascript 2>/dev/null | wc -l"])
        assert out.decode().strip() == "0", out
    finally:
        c.remove(force=True, v=True)


def test_hash_mismatch_stops_and_caches_nothing(tmp_path):
    from fxstack.image.wheels import DistCache
    from fxstack.lock.poetry_lock import PoetryLock

    lock = PoetryLock(ROOT / "poetry.lock", ROOT / "pyproject.toml")
    six = next(f for f in lock.files_for(["base"]) if f.name == "six")
    forged = type(six)(six.name, six.version, six.filename, "0" * 64)
    cache = DistCache(tmp_path / "dist")
    with pytest.raises(FxError) as err:
        cache.fetch([forged], lambda m: None, ROOT / "poetry.lock")
    assert "poetry.lock" in str(err.value) and "six" in str(err.value)
    assert not cache.has(forged) and not cache.has(six)
    assert [p.name for p in (tmp_path / "dist").iterdir()] == []
