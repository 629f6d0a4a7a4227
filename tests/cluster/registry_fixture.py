"""A real OCI registry for the push tests: Debian's docker-registry on 127.0.0.1 with TLS (a CA
and a server certificate made here with openssl) and htpasswd logins (bcrypt, by htpasswd -B),
plus a small image written into a fresh OCI layout the way the builder writes one."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from fxstack.image import oci, sbom
from fxstack.image.store import BlobStore, canonical_json
from fixture_tars import tar_of

USER, PASSWORD = "pusher", "Tq7-correct-horse-2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_ca_and_cert(d: Path) -> tuple[Path, Path, Path]:
    """A CA, and a certificate for 127.0.0.1 / localhost signed by it."""
    run = lambda *a: subprocess.run(a, check=True, capture_output=True, cwd=d)  # noqa: E731
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=fxstack test CA",
        "-keyout", "ca.key", "-out", "ca.crt")
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key",
        "-out", "server.csr")
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-extfile", "san.ext", "-out", "server.crt")
    return d / "ca.crt", d / "server.crt", d / "server.key"


@dataclass
class Registry:
    dir: Path
    port: int
    ca: Path
    proc: subprocess.Popen | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        log = open(self.dir / "registry.log", "ab")
        self.proc = subprocess.Popen([shutil.which("docker-registry"), "serve", str(self.dir / "config.yml")],
                                     stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.2).close()
                return
            except OSError:
                if self.proc.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError("docker-registry did not start: " + (self.dir / "registry.log").read_text()[-800:])

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            self.proc.wait(10)
        self.proc = None


def start_registry(d: Path) -> Registry:
    d.mkdir(parents=True, exist_ok=True)
    ca, cert, key = make_ca_and_cert(d)
    htpasswd = subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True, capture_output=True,
                              text=True).stdout
    (d / "htpasswd").write_text(htpasswd)
    port = free_port()
    (d / "config.yml").write_text(
        "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {d / 'data'}\n"
        f"auth:\n  htpasswd:\n    realm: fxstack-test\n    path: {d / 'htpasswd'}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n  tls:\n    certificate: {cert}\n    key: {key}\n")
    reg = Registry(d, port, ca)
    reg.start()
    return reg


def docker_config(d: Path, host: str, user: str = USER, password: str = PASSWORD) -> Path:
    """config.json as `docker login` writes it."""
    import base64

    d.mkdir(parents=True, exist_ok=True)
    auth = base64.b64encode(f"{user}:{password}".encode()).decode()
    (d / "config.json").write_text(json.dumps({"auths": {host: {"auth": auth}}}))
    return d / "config.json"


def write_image(store: BlobStore, name: str, layers: list[bytes], with_sbom: bool = True) -> str:
    """An image (config, manifest, index entry) and its SBOM referrer, as the builder lays them out."""
    descs = []
    for data in layers:
        digest, size = store.put_bytes(data)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": size})
    config = {"architecture": "amd64", "os": "linux", "created": "1970-01-01T00:00:00Z",
              "config": {"User": "1000:1000", "Cmd": ["/bin/true"]},
              "rootfs": {"type": "layers", "diff_ids": [d["digest"] for d in descs]}}
    cfg_digest, cfg_size = store.put_bytes(canonical_json(config))
    manifest = {"schemaVersion": 2, "mediaType": oci.MANIFEST_MEDIA_TYPE,
                "config": {"mediaType": oci.CONFIG_MEDIA_TYPE, "digest": cfg_digest, "size": cfg_size},
                "layers": descs, "annotations": {"org.opencontainers.image.title": name}}
    digest, size = store.put_bytes(canonical_json(manifest))
    oci.update_index(store, {name: (digest, size)})
    if with_sbom:
        doc, doc_size = store.put_bytes(canonical_json({"bomFormat": "CycloneDX", "specVersion": "1.6",
                                                        "metadata": {"component": {"name": name}}}))
        empty, empty_size = store.put_bytes(sbom.EMPTY_BLOB)
        artifact = {"schemaVersion": 2, "mediaType": oci.MANIFEST_MEDIA_TYPE, "artifactType": sbom.SBOM_MEDIA_TYPE,
                    "config": {"mediaType": sbom.EMPTY_MEDIA_TYPE, "digest": empty, "size": empty_size},
                    "layers": [{"mediaType": sbom.SBOM_MEDIA_TYPE, "digest": doc, "size": doc_size}],
                    "subject": {"mediaType": oci.MANIFEST_MEDIA_TYPE, "digest": digest, "size": size}}
        a_digest, a_size = store.put_bytes(canonical_json(artifact))
        index = json.loads((store.root / "index.json").read_text())
        index["manifests"].append({"mediaType": oci.MANIFEST_MEDIA_TYPE, "digest": a_digest, "size": a_size,
                                   "annotations": {"org.opencontainers.image.ref.name": sbom.sbom_ref_name(name),
                                                   "fxstack.sbom.subject": digest}})
        (store.root / "index.json").write_text(json.dumps(index))
    return digest


def random_layer(seed: str, size: int) -> bytes:
    """Incompressible, deterministic bytes in a tar: a layer of a known size."""
    out, block = bytearray(), hashlib.sha256(seed.encode()).digest()
    while len(out) < size:
        block = hashlib.sha256(block).digest()
        out += block
    return tar_of({f"{seed}.bin": bytes(out[:size])})
