"""Secrets as files: what `fxstack up` derives from the FX stack's compose/.env, and the Redis ACL it writes,
against a real redis-server (Debian's, the same Redis 7 as the image)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
import time

import pytest

from fxstack.envfile import secret_files as render
from fxstack.errors import FxError
from fxstack.stacks.fx import FX, REDIS_ACL_USERS, SECRET_FILES, SECRET_KEYS


def generated_values():
    return FX.generate()


def secret_files(values, names=None):
    return render(SECRET_FILES, values, names)


@pytest.mark.unit
def test_secret_files_hold_bare_values_and_urls_without_a_newline():
    values = generated_values()
    files = secret_files(values)
    for name, content in files.items():
        assert content and not content.endswith(b"\n") or name in ("redis_users_acl", "oanda_api_token"), name
    # the user's optional OANDA token: the value when set, a bare newline (Swarm refuses an empty
    # secret; the pipeline strips it to "not set") when not
    assert files["oanda_api_token"] == b"\n"
    assert secret_files({**values, "OANDA_API_TOKEN": "t0k"}, ["oanda_api_token"]) == {"oanda_api_token": b"t0k"}
    assert files["postgres_password"].decode() == values["POSTGRES_PASSWORD"]
    assert files["airflow_sql_alchemy_conn"].decode() == (
        f"postgresql+psycopg2://airflow:{values['AIRFLOW_DB_PASSWORD']}@postgres:5432/airflow")
    assert files["airflow_broker_url"].decode() == f"redis://airflow:{values['REDIS_AIRFLOW_PASSWORD']}@redis:6379/1"
    assert files["mlflow_backend_store_uri"].decode().startswith(f"postgresql://mlflow:{values['MLFLOW_DB_PASSWORD']}@")


@pytest.mark.unit
def test_the_redis_acl_file_has_no_password_in_clear():
    values = generated_values()
    acl = secret_files(values)["redis_users_acl"].decode()
    for key in SECRET_KEYS:
        assert values[key] not in acl, key
    assert acl.splitlines()[0].startswith("user default off")
    assert {line.split()[1] for line in acl.splitlines()} == {"default", *REDIS_ACL_USERS}


@pytest.mark.unit
def test_a_missing_secret_is_named():
    values = generated_values()
    del values["REDIS_API_PASSWORD"]
    with pytest.raises(FxError, match="REDIS_API_PASSWORD"):
        secret_files(values)
    # only what is asked for is needed: a stack that mounts no Redis secret works without it
    assert set(secret_files(values, ["postgres_password"])) == {"postgres_password"}
    values["POSTGRES_PASSWORD"] = ""
    with pytest.raises(FxError, match="postgres_password"):
        secret_files(values, ["postgres_password"])


@pytest.mark.unit
def test_write_creates_0600_and_rewrites_in_place(tmp_path):
    from fxstack.stack.secrets import _write

    path = tmp_path / "s"
    _write(path, b"one", os.getuid(), os.getgid())
    inode = path.stat().st_ino
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_bytes() == b"one"
    path.chmod(0o644)
    _write(path, b"two-longer", os.getuid(), os.getgid())
    _write(path, b"3", os.getuid(), os.getgid())
    # same inode: a running container's bind mount of the file sees the new value
    assert path.stat().st_ino == inode and path.read_bytes() == b"3"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def _redis_cli(port: int, *args: str, user: str | None = None, password: str | None = None) -> str:
    env = dict(os.environ)
    cmd = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
    if user:
        cmd += ["--user", user]
    if password:
        env["REDISCLI_AUTH"] = password
    out = subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, timeout=10)
    return (out.stdout + out.stderr).strip()


@pytest.fixture
def acl_redis(tmp_path):
    exe = shutil.which("redis-server")
    if exe is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server not installed (apt-get install redis-server)")
    values = generated_values()
    acl = tmp_path / "users.acl"
    acl.write_bytes(secret_files(values)["redis_users_acl"])
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir",
                             str(tmp_path), "--aclfile", str(acl)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 20
    while "NOAUTH" not in _redis_cli(port, "PING"):
        assert proc.poll() is None, "redis-server refused the ACL file"
        assert time.monotonic() < deadline, "redis-server did not answer"
        time.sleep(0.1)
    yield port, values
    proc.terminate()
    proc.wait(10)


@pytest.mark.integration
def test_each_client_has_only_its_own_rights(acl_redis):
    port, v = acl_redis
    assert "NOAUTH" in _redis_cli(port, "GET", "k")
    assert "WRONGPASS" in _redis_cli(port, "PING", user="airflow", password=v["REDIS_API_PASSWORD"])
    assert _redis_cli(port, "SET", "k", "v", user="airflow", password=v["REDIS_AIRFLOW_PASSWORD"]) == "OK"
    assert _redis_cli(port, "HSET", "h", "f", "1", user="airflow", password=v["REDIS_AIRFLOW_PASSWORD"]) == "1"
    # the API reads (Feast: HMGET), and may not write
    assert _redis_cli(port, "HMGET", "h", "f", user="api", password=v["REDIS_API_PASSWORD"]) == "1"
    assert "NOPERM" in _redis_cli(port, "SET", "k", "x", user="api", password=v["REDIS_API_PASSWORD"])
    assert "NOPERM" in _redis_cli(port, "FLUSHALL", user="api", password=v["REDIS_API_PASSWORD"])
    # the exporter reads INFO and config, writes nothing
    assert "redis_version" in _redis_cli(port, "INFO", "server", user="exporter",
                                         password=v["REDIS_EXPORTER_PASSWORD"])
    assert "NOPERM" in _redis_cli(port, "DEL", "k", user="exporter", password=v["REDIS_EXPORTER_PASSWORD"])
    # the health check's user may only PING
    assert _redis_cli(port, "PING", user="probe", password=v["REDIS_PROBE_PASSWORD"]) == "PONG"
    assert "NOPERM" in _redis_cli(port, "GET", "k", user="probe", password=v["REDIS_PROBE_PASSWORD"])


@pytest.mark.integration
def test_services_log_in_through_password_files(acl_redis, tmp_path, monkeypatch):
    """The services' own helper (fxservices.common.config.redis_auth) with a Compose-style file."""
    redis = pytest.importorskip("redis")
    from fxservices.common.config import redis_auth

    port, v = acl_redis
    secret = tmp_path / "api_redis_password"
    secret.write_bytes(secret_files(v)["api_redis_password"])
    monkeypatch.setenv("REDIS_USERNAME", "api")
    monkeypatch.delenv("REDIS_PASSWORD", raising=False)
    monkeypatch.setenv("REDIS_PASSWORD_FILE", str(secret))
    assert redis.Redis(host="127.0.0.1", port=port, **redis_auth()).ping() is True
    monkeypatch.delenv("REDIS_PASSWORD_FILE")
    with pytest.raises(redis.exceptions.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, **redis_auth()).ping()


@pytest.mark.integration
def test_reading_an_images_user_makes_no_volume(cpu_images, docker_client):
    """`up` looks up each secret reader's uid in its image's /etc/passwd through a throwaway
    container; for an image that declares VOLUME (postgres) Docker made an anonymous volume for
    it, which piled up, one per `up`, until the container's removal took it along, and which
    whatever listed volumes meanwhile saw. The container now has a mount there: no volume at all."""
    import re

    from fxstack.stack.secrets import image_user_ids

    _, images = cpu_images
    assert images["postgres"].ref and docker_client.images.get(images["postgres"].ref).attrs["Config"]["Volumes"]
    since = time.time()
    uid, _ = image_user_ids(docker_client, images["postgres"].ref)
    until = time.time() + 1
    assert uid != 0
    # Anonymous volumes are named by 64 hex digits; a named one is another test's stack (tests/parallel.py).
    made = [e["Actor"]["ID"] for e in docker_client.events(since=since, until=until, decode=True,
                                                           filters={"type": "volume", "event": "create"})
            if re.fullmatch(r"[0-9a-f]{64}", e["Actor"]["ID"])]
    assert made == [], made
