"""Measure `fxstack push` for docs/cluster.md: a cold push of fx-fastapi to an empty registry
(TLS + htpasswd, Debian's docker-registry on 127.0.0.1), then the push of the same image after a
one-line code change, which must send only the app layer (and the new config and SBOM).

    .venv/bin/python tests/cluster/measure_push.py OUT.json

The changed build runs in a copy of the working tree and a hard-linked copy of the state directory
(every write there is a rename, so the original stays as it was)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fxstack.cluster.push import push_images
from fxstack.cluster.registry_client import RegistryClient, Target
from fxstack.image.store import BlobStore
from fxstack.paths import repo_root, state_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings
from registry_fixture import docker_config, start_registry  # noqa: E402

IMAGE = "fx-fastapi"
CHANGED_FILE = "src/fxservices/inference/__init__.py"


def _push(reg, store: BlobStore, state: Path, work: Path) -> dict:
    client = RegistryClient(reg.host, ca_file=reg.ca, config=docker_config(work / "docker", reg.host))
    t0 = time.monotonic()
    (r,) = push_images(Target.parse(f"{reg.host}/fx"), client, store, state, [IMAGE], lambda m: print(m, flush=True))
    return {"seconds": round(time.monotonic() - t0, 2), "bytes_sent": r.bytes_sent, "blobs_sent": r.blobs_sent,
            "blobs_present": r.blobs_present, "digest": r.remote_digest}


def main(out: str) -> None:
    root, state = repo_root(), state_dir()
    work = Path(tempfile.mkdtemp(prefix="fx-push-measure-"))
    reg = start_registry(work / "registry")
    try:
        cold = _push(reg, BlobStore(state / "oci"), work / "push-state", work)
        # the one-line change, built in copies
        copy_root, copy_state = work / "repo", work / "state"
        # the working tree as it is (what the state's images were built from), not HEAD
        shutil.copytree(root, copy_root, symlinks=True, ignore=shutil.ignore_patterns(
            ".fxstack", ".venv", ".git", "__pycache__", ".schemathesis", "node_modules"))
        subprocess.run(["cp", "-al", str(state), str(copy_state)], check=True)
        target = copy_root / CHANGED_FILE
        target.write_text(target.read_text() + "# a one-line change\n")
        env = {**os.environ, "FXSTACK_ROOT": str(copy_root), "FXSTACK_STATE": str(copy_state),
               "FXSTACK_CACHE": str(state / "cache")}
        t0 = time.monotonic()
        subprocess.run([sys.executable, "-m", "fxstack.cli", "build", IMAGE], env=env, check=True)
        build_s = round(time.monotonic() - t0, 2)
        changed = _push(reg, BlobStore(copy_state / "oci"), work / "push-state", work)
        result = {"image": IMAGE, "registry": "docker-registry 2.8 on 127.0.0.1, TLS + htpasswd",
                  "cold_push": cold, "one_line_change": {"rebuild_s": build_s, **changed},
                  "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        Path(out).write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1])
