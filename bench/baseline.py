"""The Dockerfile baseline the benchmark measures us against.

One Dockerfile per Python image: FROM the same Debian 12 root filesystem as ours (fx-base's)
imported into Docker, `pip install --require-hashes` (pip run from its pinned wheel, which our
images do not carry) of the same requirements exported from poetry.lock, COPY of the same app
code. Built with the classic
`docker build`, layer cache and all, as a team without our builder would.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

from fxstack.image.builder import Builder
from fxstack.lock.poetry_lock import export_requirements  # noqa: F401 (used by bench.py)
from fxstack.specs import ImageSpec

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


# pip, which our images do not carry, as a wheel run from the build context (python runs a
# wheel's top-level package from the zip): pinned by version and sha256 like everything else.
PIP_WHEEL = "pip-24.3.1-py3-none-any.whl"
PIP_SHA256 = "3790624780082365f47549d032f3770eeb2b1e8bd1f7b2e02dace1afa361b4ed"


def pip_wheel(work: Path) -> Path:
    path = work / PIP_WHEEL
    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != PIP_SHA256:
        version = PIP_WHEEL.split("-")[1]
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(work),
                        f"pip=={version}"], check=True, capture_output=True)
        if hashlib.sha256(path.read_bytes()).hexdigest() != PIP_SHA256:
            raise RuntimeError(f"{path}: sha256 differs from the pinned {PIP_SHA256}")
    return path


def base_image(builder: Builder, work: Path) -> str:
    """Our Python root filesystem (fx-base's: Debian 12, python3, tini, fxuser, /app, /data)
    imported into Docker as the FROM image, so both sides start from the same bytes."""
    spec = builder.specs["fx-base"]
    record = builder.rootfs.build(builder._recipe(spec))
    tag = f"fxbench/debian-python:{record['digest'][7:19]}"
    if subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode != 0:
        with open(builder.store.path(record["digest"]), "rb") as f:
            subprocess.run(["docker", "import", "-", tag], stdin=f, check=True, capture_output=True)
    return tag


def dockerfile(spec: ImageSpec, base: str) -> str:
    lines = [f"FROM {base}", f"LABEL {BENCH_LABEL}=1", "COPY host-ca.crt /etc/ssl/certs/host-ca.crt",
             f"COPY {PIP_WHEEL} /tmp/{PIP_WHEEL}",
             "ENV PIP_CERT=/etc/ssl/certs/host-ca.crt PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
             "COPY requirements.txt /tmp/requirements.txt",
             f"RUN python3 /tmp/{PIP_WHEEL}/pip install --break-system-packages --no-deps --require-hashes"
             " -r /tmp/requirements.txt"]
    for a in spec.app:
        lines.append(f"COPY {a.src} {a.dest}")
    for k, v in sorted(spec.env.items()):
        lines.append(f'ENV {k}="{v}"')
    lines += [f"WORKDIR {spec.workdir}", f"USER {spec.uid}:{spec.uid}"]
    if spec.entrypoint:
        lines.append("ENTRYPOINT " + _json(spec.entrypoint))
    if spec.cmd:
        lines.append("CMD " + _json(spec.cmd))
    return "\n".join(lines) + "\n"


def _json(items) -> str:
    import json

    return json.dumps(list(items))


def prepare(builder: Builder, root: Path, work: Path, names: list[str]) -> dict[str, Path]:
    """Write a build context per image (a copy of the app sources, requirements, CA bundle)."""
    base = base_image(builder, work)
    pip = pip_wheel(work)
    contexts = {}
    for name in names:
        spec = builder.specs[name]
        ctx = work / "ctx" / name
        if ctx.exists():
            shutil.rmtree(ctx)
        ctx.mkdir(parents=True)
        (ctx / "requirements.txt").write_text(export_requirements(builder.lock, list(spec.groups)))
        shutil.copy(HOST_CA, ctx / "host-ca.crt")
        shutil.copy(pip, ctx / PIP_WHEEL)
        for a in spec.app:
            src, dst = root / a.src, ctx / a.src
            dst.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            else:
                shutil.copy(src, dst)
        (ctx / "Dockerfile").write_text(dockerfile(spec, base))
        contexts[name] = ctx
    return contexts


def docker_build(ctx: Path, tag: str, *, no_cache: bool = False) -> float:
    started = time.monotonic()
    cmd = ["docker", "build", "--network", "host", "-q", "-t", tag, str(ctx)]
    if no_cache:
        cmd.insert(2, "--no-cache")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"docker build {tag} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return time.monotonic() - started


# Every image a baseline build makes carries this label, so the benchmark can remove them all
# afterwards, the tagged ones and those each rebuild leaves dangling (one per code change).
BENCH_LABEL = "org.fxstack.bench-baseline"


def remove_images() -> int:
    """Remove every image a baseline build made; returns how many."""
    ids = subprocess.run(["docker", "image", "ls", "-q", "--no-trunc", "--filter", f"label={BENCH_LABEL}"],
                         capture_output=True, text=True, check=True).stdout.split()
    if ids:
        subprocess.run(["docker", "image", "rm", "-f", *sorted(set(ids))], capture_output=True, check=True)
    return len(set(ids))


def image_id(tag: str) -> str:
    return subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", tag],
                          capture_output=True, text=True, check=True).stdout.strip()


def image_size(tag: str) -> int:
    return int(subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag],
                              capture_output=True, text=True, check=True).stdout.strip())
