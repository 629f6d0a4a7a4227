"""A private registry on 127.0.0.1 (Debian's docker-registry) and a minimal OCI push client.

Docker pulls from it only the layers it does not have yet, which is what makes reloading
an image after a code change cost one small layer instead of the whole image.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Callable

from ..image.oci import CONFIG_MEDIA_TYPE, MANIFEST_MEDIA_TYPE
from ..image.store import BlobStore, atomic_write_bytes, file_lock
from ..errors import FxError
from ..poll import TimedOut, poll
from .http import Response, Session
from ..reclaim import Freed


def _gone(pid: int) -> bool | None:
    """True once `pid` has exited: reaped if it is our own child (a zombie would pass kill 0),
    else no longer there at all."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return True
    except ChildProcessError:
        pass  # started by another process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return None


class LocalRegistry:
    def __init__(self, state: Path, port: int | None = None):
        port = port or int(os.environ.get("FXSTACK_REGISTRY_PORT", "5555"))
        self.dir = state / "registry"
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.host = f"127.0.0.1:{port}"
        self.session = Session(self.base)
        self._mounts_path = self.dir / "blob-repos.json"
        self._running = False

    def _up(self) -> bool:
        try:
            return self.session.get(self.base + "/v2/", timeout=1).status_code == 200
        except OSError:
            return False

    def ensure_running(self) -> None:
        """Start the registry unless one answers; asked once per image loaded, so an answer
        is remembered until stop()."""
        if self._running or self._up():
            self._running = True
            return
        binary = shutil.which("docker-registry") or shutil.which("registry")
        if binary is None:
            raise FxError("no registry binary found", where="docker-registry",
                          hint="apt-get install docker-registry, or use `fxstack load --method docker-load`")
        self.dir.mkdir(parents=True, exist_ok=True)
        # Two loads at once (two `fxstack load`, two test processes) start one registry: the
        # second finds the first's answering once it has the lock.
        with file_lock(self.dir / ".start.lock"):
            if self._up():
                self._running = True
                return
            self._start(binary)

    def _start(self, binary: str) -> None:
        config = self.dir / "config.yml"
        config.write_text(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
            f"    rootdirectory: {self.dir / 'data'}\n  delete:\n    enabled: true\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n")
        log = open(self.dir / "registry.log", "ab")
        proc = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=log,
                                start_new_session=True)
        (self.dir / "registry.pid").write_text(str(proc.pid))

        def answering() -> bool | None:
            if self._up():
                return True
            return False if proc.poll() is not None else None  # exited: no point waiting

        try:
            self._running = poll(answering, timeout=10, interval=0.1)
        except TimedOut:
            pass
        if self._running:
            return
        tail = (self.dir / "registry.log").read_text(errors="replace")[-800:]
        raise FxError(f"the local registry did not start on {self.host}:\n{tail}",
                      where=str(config), hint=f"is port {self.port} taken? set FXSTACK_REGISTRY_PORT")

    def stop(self) -> None:
        self._running = False
        pid_file = self.dir / "registry.pid"
        if pid_file.exists():
            try:
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGTERM)
                # wait until it is gone, so its port and storage are free for what follows
                poll(lambda: _gone(pid), timeout=10, interval=0.1)
            except (ProcessLookupError, ValueError, TimedOut):
                pass
            pid_file.unlink()

    # -- push --------------------------------------------------------------------

    def _known_repos(self) -> dict[str, str]:
        try:
            return json.loads(self._mounts_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def _check(self, resp: Response, what: str) -> Response:
        if resp.status_code >= 400:
            raise FxError(f"registry refused {what}: HTTP {resp.status_code} {resp.text[:300]}",
                          where=self.host)
        return resp

    def _push_blob(self, repo: str, store: BlobStore, digest: str, known: dict[str, str],
                   trust_record: bool = True) -> int:
        """Make `digest` available in `repo`; return the bytes actually uploaded."""
        source = known.get(digest)
        if source == repo and trust_record:
            # pushed to this very repository before: our record is as good as asking (it is
            # kept with the registry's data, and pruned when garbage-collect removes blobs)
            return 0
        url = f"{self.base}/v2/{repo}/blobs/{digest}"
        if self.session.head(url, timeout=30).status_code == 200:
            return 0
        if source and source != repo:
            r = self.session.post(f"{self.base}/v2/{repo}/blobs/uploads/",
                                  params={"mount": digest, "from": source}, timeout=60)
            if r.status_code == 201:
                return 0
        else:
            r = self._check(self.session.post(f"{self.base}/v2/{repo}/blobs/uploads/", timeout=60),
                            f"an upload of {digest[:19]}")
        location = r.headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        path = store.path(digest)
        size = path.stat().st_size
        with open(path, "rb") as f:
            self._check(self.session.put(location, params={"digest": digest}, data=f, timeout=600,
                                         headers={"Content-Type": "application/octet-stream",
                                                  "Content-Length": str(size)}),
                        f"blob {digest[:19]}")
        known[digest] = repo
        return size

    def holds(self, store: BlobStore, manifest_digest: str) -> bool:
        """True when every blob of the image was pushed here before (to any repository: a
        later push mounts it instead of uploading). Read from our record, without starting
        the registry; a registry directory wiped by hand takes the record with it."""
        manifest = json.loads(store.path(manifest_digest).read_bytes())
        known = self._known_repos()
        return all(d["digest"] in known for d in [manifest["config"], *manifest["layers"]])

    def push(self, store: BlobStore, name: str, tag: str, manifest_digest: str,
             log: Callable[[str], None]) -> int:
        manifest = json.loads(store.path(manifest_digest).read_bytes())
        known = self._known_repos()
        sent = 0
        for trust_record in (True, False):
            for desc in [manifest["config"], *manifest["layers"]]:
                sent += self._push_blob(name, store, desc["digest"], known, trust_record)
                known.setdefault(desc["digest"], name)
            atomic_write_bytes(self._mounts_path, json.dumps(known).encode())
            resp = self.session.put(f"{self.base}/v2/{name}/manifests/{tag}",
                                    data=store.path(manifest_digest).read_bytes(),
                                    headers={"Content-Type": MANIFEST_MEDIA_TYPE}, timeout=60)
            if resp.status_code == 400 and "BLOB_UNKNOWN" in resp.text and trust_record:
                continue  # the record claims a blob the registry lost: ask it about every one
            self._check(resp, f"manifest of {name}:{tag}")
            break
        return sent

    # -- garbage collection -------------------------------------------------------------------

    def _data_bytes(self) -> int:
        data = self.dir / "data"
        return sum(p.stat().st_size for p in data.rglob("*") if p.is_file()) if data.exists() else 0

    def prune(self, keep_refs: set[str], dry_run: bool, log: Callable[[str], None]):
        """Delete every manifest whose `name:tag` is not in keep_refs, then let the registry's
        own `garbage-collect` remove the blobs no manifest references any more."""
        freed = Freed("local registry")
        if not (self.dir / "data").exists():
            return freed
        was_up = self._up()
        self.ensure_running()
        stale = []
        repos = self._check(self.session.get(f"{self.base}/v2/_catalog", params={"n": 1000},
                                             timeout=30), "the catalog").json().get("repositories") or []
        for repo in repos:
            tags = self._check(self.session.get(f"{self.base}/v2/{repo}/tags/list", timeout=30),
                               f"the tags of {repo}").json().get("tags") or []
            stale += [(repo, tag) for tag in tags if f"{repo}:{tag}" not in keep_refs]
        freed.items = len(stale)
        if dry_run:
            if not was_up:
                self.stop()
            return freed
        for repo, tag in stale:
            head = self._check(self.session.head(f"{self.base}/v2/{repo}/manifests/{tag}",
                                                 headers={"Accept": MANIFEST_MEDIA_TYPE}, timeout=30),
                               f"manifest {repo}:{tag}")
            digest = head.headers["Docker-Content-Digest"]
            self._check(self.session.delete(f"{self.base}/v2/{repo}/manifests/{digest}", timeout=30),
                        f"deleting {repo}:{tag}")
        # garbage-collect must not run beside a serving registry: stop ours, sweep, and leave
        # it stopped (the next load starts it). One we did not start is left alone.
        if not (self.dir / "registry.pid").exists():
            freed.notes.append(f"the registry on {self.host} was not started from {self.dir}; "
                               "manifests deleted, blobs left for its owner's garbage-collect")
            return freed
        self.stop()
        binary = shutil.which("docker-registry") or shutil.which("registry")
        before = self._data_bytes()
        proc = subprocess.run([binary, "garbage-collect", str(self.dir / "config.yml")],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise FxError(f"garbage-collect failed: {(proc.stdout + proc.stderr)[-800:]}",
                          where=str(self.dir / "config.yml"),
                          hint=f"remove {self.dir} to start the registry afresh (the next load "
                               "refills it)")
        freed.bytes = max(0, before - self._data_bytes())
        self._forget_missing_blobs()
        return freed

    def _forget_missing_blobs(self) -> None:
        """Our record of pushed blobs must not claim what garbage-collect removed: `holds`
        would then skip a needed push, and pushes would try mounts that fail."""
        blobs = self.dir / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
        known = {d: repo for d, repo in self._known_repos().items()
                 if (blobs / d.removeprefix("sha256:")[:2] / d.removeprefix("sha256:") / "data").exists()}
        atomic_write_bytes(self._mounts_path, json.dumps(known).encode())


__all__ = ["LocalRegistry", "CONFIG_MEDIA_TYPE"]
