"""`fxstack push` against a real registry (Debian's docker-registry, TLS + htpasswd), read back
with skopeo, the reference client. Every failure a user meets first is a clear FxError."""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest

from fxstack.cluster.push import push_images
from fxstack.cluster.registry_client import RegistryClient, Target
from fxstack.errors import FxError
from fxstack.image.store import BlobStore

from .registry_fixture import PASSWORD, USER, docker_config, free_port, random_layer, start_registry, write_image

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    if shutil.which("docker-registry") is None or shutil.which("htpasswd") is None:
        pytest.skip("docker-registry and htpasswd (apache2-utils) are needed; scripts/bootstrap.sh installs them")
    reg = start_registry(tmp_path_factory.mktemp("registry"))
    yield reg
    reg.stop()


@pytest.fixture
def store(tmp_path):
    store = BlobStore(tmp_path / "oci")
    base = random_layer("base", 600_000)
    write_image(store, "fx-demo", [base, random_layer("app-1", 40_000)])
    write_image(store, "fx-other", [base, random_layer("other", 30_000)])
    return store


def client(registry, tmp_path, **kw) -> RegistryClient:
    config = kw.pop("config", None) or docker_config(tmp_path / "docker", registry.host)
    return RegistryClient(registry.host, ca_file=kw.pop("ca_file", registry.ca), config=config, **kw)


def skopeo_inspect(registry, ref: str, *extra: str) -> dict:
    cert_dir = registry.dir / "skopeo-certs"
    cert_dir.mkdir(exist_ok=True)
    shutil.copy(registry.ca, cert_dir / "ca.crt")
    out = subprocess.run(["skopeo", "inspect", "--cert-dir", str(cert_dir), "--creds", f"{USER}:{PASSWORD}",
                          *extra, f"docker://{ref}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_push_by_digest_read_back_by_skopeo_then_only_missing_blobs(registry, store, tmp_path):
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is needed; scripts/bootstrap.sh installs it")
    target = Target.parse(f"{registry.host}/team/fx")
    logs: list[str] = []
    first = push_images(target, client(registry, tmp_path), store, tmp_path / "state", ["fx-demo"], logs.append)[0]
    assert first.remote_digest == first.local_digest
    assert first.local_digest in logs[0] and first.remote_digest in logs[0]
    assert first.blobs_sent == 5 and first.bytes_sent > 600_000  # config, 2 layers; SBOM + empty config

    seen = skopeo_inspect(registry, f"{registry.host}/team/fx/fx-demo@{first.local_digest}")
    assert seen["Digest"] == first.local_digest
    assert len(seen["Layers"]) == 2
    # the SBOM referrer, through the OCI 1.1 fallback tag (distribution 2.8 has no referrers API)
    referrers = skopeo_inspect(registry, f"{registry.host}/team/fx/fx-demo:"
                               + first.local_digest.replace(":", "-"), "--raw")
    assert [m["digest"] for m in referrers["manifests"]] == [first.sbom_digest]
    assert referrers["manifests"][0]["artifactType"] == "application/vnd.cyclonedx+json"

    # again: nothing to send; a second image with the shared base layer in another repository
    again = push_images(target, client(registry, tmp_path), store, tmp_path / "state", None, lambda m: None)
    by_name = {r.image: r for r in again}
    assert by_name["fx-demo"].bytes_sent == 0 and by_name["fx-demo"].blobs_sent == 0
    other = by_name["fx-other"]
    # the shared base layer and the SBOM's empty config are mounted from team/fx/fx-demo
    assert other.blobs_mounted == 2
    assert other.bytes_sent < 100_000
    assert skopeo_inspect(registry, f"{registry.host}/team/fx/fx-other@{other.local_digest}")["Digest"] \
        == other.local_digest


def test_a_retry_finishes_what_a_failed_push_started(registry, tmp_path):
    store = BlobStore(tmp_path / "oci")
    write_image(store, "fx-retry", [random_layer(f"retry-{i}", 200_000) for i in range(3)], with_sbom=False)
    target = Target.parse(f"{registry.host}/retry")

    def registry_dies_after_first_upload(digest, size):
        registry.stop()

    try:
        with pytest.raises(FxError) as failed:
            push_images(target, client(registry, tmp_path), store, tmp_path / "state", None, lambda m: None,
                        on_upload=registry_dies_after_first_upload)
        assert "cannot reach the registry" in str(failed.value) and registry.host in str(failed.value)
    finally:
        registry.start()
    done = push_images(target, client(registry, tmp_path), store, tmp_path / "state", None, lambda m: None)[0]
    assert done.blobs_present == 1 and done.blobs_sent == 3  # config + 2 layers left; the first one kept
    assert done.remote_digest == done.local_digest


def test_wrong_password_names_the_registry_and_docker_login(registry, store, tmp_path):
    config = docker_config(tmp_path / "wrong", registry.host, password="not-it")
    with pytest.raises(FxError) as err:
        push_images(Target.parse(f"{registry.host}/fx"), client(registry, tmp_path, config=config), store,
                    tmp_path / "state", ["fx-demo"], lambda m: None)
    text = str(err.value)
    assert f"{registry.host} refused the login of user '{USER}'" in text and "docker login" in text


def test_no_login_at_all_says_how_to_log_in(registry, store, tmp_path):
    empty = tmp_path / "none" / "config.json"
    with pytest.raises(FxError, match="asks for a login.*\n.*docker login"):
        push_images(Target.parse(f"{registry.host}/fx"), client(registry, tmp_path, config=empty), store,
                    tmp_path / "state", ["fx-demo"], lambda m: None)


def test_unknown_ca_says_ca_file(registry, store, tmp_path):
    c = RegistryClient(registry.host, config=docker_config(tmp_path / "d", registry.host))
    with pytest.raises(FxError, match="signed by a CA this machine does not trust.*\n.*--ca-file"):
        push_images(Target.parse(f"{registry.host}/fx"), c, store, tmp_path / "state", None, lambda m: None)


def test_unreachable_registry(store, tmp_path):
    host = f"127.0.0.1:{free_port()}"
    c = RegistryClient(host, config=docker_config(tmp_path / "d", host))
    with pytest.raises(FxError, match=f"cannot reach the registry at https://{host}"):
        push_images(Target.parse(f"{host}/fx"), c, store, tmp_path / "state", None, lambda m: None)


def test_plain_http_to_a_tls_registry_says_so(registry, store, tmp_path):
    with pytest.raises(FxError) as err:
        push_images(Target.parse(f"{registry.host}/fx"), client(registry, tmp_path, insecure=True), store,
                    tmp_path / "state", None, lambda m: None)
    assert registry.host in str(err.value) and "drop --insecure" in str(err.value)


def test_a_name_the_registry_refuses(registry, store, tmp_path):
    with pytest.raises(FxError) as err:
        push_images(Target.parse(f"{registry.host}/Team_/fx"), client(registry, tmp_path), store,
                    tmp_path / "state", ["fx-demo"], lambda m: None)
    text = str(err.value)
    assert f"{registry.host} refuses the repository name 'Team_/fx/fx-demo'" in text and "PREFIX" in text
