"""compose/bsopt.yml and the harness's choice of stack, read the way Compose and the harness
read them (no containers)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from fxstack.stack import compose
from fxstack.stack.target import Target
from fxstack.stacks import registry
from fxstack.stacks.bsopt import BSOPT
from fxstack.stacks.fx import FX

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
DOC = yaml.safe_load((REPO / "compose" / "bsopt.yml").read_text())
LONG_RUNNING = {"postgres", "redis", "quote-board", "api", "neural-pricing", "worker", "scraper"}


def test_project_services_and_images_from_images_env():
    assert DOC["name"] == "bsopt"
    assert set(DOC["services"]) == LONG_RUNNING | {"db-init"}
    for name, svc in DOC["services"].items():
        assert svc["image"].startswith("${") and ":?" in svc["image"], name
        assert "latest" not in svc["image"]


def test_every_long_running_service_has_a_health_check_and_a_restart_policy():
    for name in LONG_RUNNING:
        svc = DOC["services"][name]
        assert svc["healthcheck"]["test"][0] in ("CMD", "CMD-SHELL"), name
        assert svc["restart"] == "unless-stopped", name
    assert DOC["services"]["db-init"]["restart"] == "no"


def test_ports_only_on_loopback_and_movable():
    ports = compose.published_ports([REPO / "compose" / "bsopt.yml"])
    assert {(p.service, p.var, p.target) for p in ports} == {("api", "BSOPT_API_PORT", 8000),
                                                              ("neural-pricing", "BSOPT_PRICING_PORT", 8000)}
    assert all(p.host_ip == "127.0.0.1" for p in ports)
    assert DOC["networks"]["backend"]["internal"] is True
    for name in ("postgres", "redis", "worker", "scraper", "quote-board"):
        assert DOC["services"][name]["networks"] == ["backend"], name


def test_secrets_are_files_derived_from_the_env_file():
    """No secret of compose/bsopt.env is interpolated into the Compose file: every secret reaches a
    service as a file that BSOPT.secret_files derives from it (tests/security/test_compose_policy.py
    holds every stack to the same)."""
    text = (REPO / "compose" / "bsopt.yml").read_text()
    for key in BSOPT.secret_keys:
        assert f"${{{key}" not in text, key
    mounted = {s for svc in DOC["services"].values() for s in svc.get("secrets") or []}
    assert mounted == set(DOC["secrets"]) == set(BSOPT.secret_files)
    assert all(name.startswith("bsopt_") for name in BSOPT.secret_files)
    values = BSOPT.generate()
    files = {name: make(values) for name, make in BSOPT.secret_files.items()}
    assert all(files.values())
    assert files["bsopt_database_url"] == f"postgresql://bsopt:{values['BSOPT_DB_PASSWORD']}@postgres:5432/bsopt"
    acl = files["bsopt_redis_users_acl"].splitlines()
    assert acl[0] == "user default off resetkeys -@all"
    assert sorted(line.split()[1] for line in acl[1:]) == ["api", "probe", "scraper", "worker"]
    assert not any(values[k] in files["bsopt_redis_users_acl"] for k in BSOPT.secret_keys)  # hashes only
    # each client logs in as its own Redis user, with its own password file
    for svc, user in (("api", "api"), ("worker", "worker"), ("scraper", "scraper")):
        env = DOC["services"][svc]["environment"]
        assert env["BSOPT_REDIS_USERNAME"] == user
        assert env["BSOPT_REDIS_PASSWORD_FILE"] == f"/run/secrets/bsopt_redis_{user}_password"
        assert f"bsopt_redis_{user}_password" in DOC["services"][svc]["secrets"]


def test_no_argument_is_the_fx_stack():
    fx = Target(registry.get(None), variants=("gpu",))
    assert fx.stack is FX and fx.project_name == "fxstack"
    assert fx.env_path.name == ".env"
    assert [f.name for f in fx.files] == ["docker-compose.yml", "docker-compose.gpu.yml"]


def test_bsopt_as_a_target():
    bsopt = Target(registry.get("bsopt"))
    assert bsopt.project_name == "bsopt"
    assert bsopt.env_path == REPO / "compose" / "bsopt.env"
    assert [f.name for f in bsopt.files] == ["bsopt.yml"]
    assert [f.name for f in bsopt.but(variants=("dev",)).files] == ["bsopt.yml", "bsopt.dev.yml"]


def test_unknown_stack_or_variant_is_refused():
    from fxstack.errors import FxError

    with pytest.raises(FxError, match="no stack named 'nope'"):
        registry.get("nope")
    with pytest.raises(FxError, match="no variant gpu"):
        Target(BSOPT, variants=("gpu",))   # no GPU variant


def test_compose_accepts_the_file_and_the_dev_override(tmp_path):
    """Compose's own reading of bsopt.yml (+ bsopt.dev.yml): valid, and the dev override mounts
    src/bsopt read-only and reloads."""
    env = {**os.environ, "POSTGRES_IMAGE": "p:1", "REDIS_IMAGE": "r:1", "BSOPT_API_IMAGE": "a:1",
           "BSOPT_NEURAL_PRICING_IMAGE": "n:1", "BSOPT_WORKER_IMAGE": "w:1", "BSOPT_SCRAPER_IMAGE": "s:1",
           "BSOPT_POSTGRES_PASSWORD": "x", "BSOPT_DB_PASSWORD": "y"}
    cmd = compose.find_compose() + ["-p", "bsopt", "--project-directory", str(REPO / "compose"),
                                    "-f", str(REPO / "compose" / "bsopt.yml"),
                                    "-f", str(REPO / "compose" / "bsopt.dev.yml"), "config", "--format", "json"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    import json

    cfg = json.loads(proc.stdout)["services"]
    assert "--reload" in cfg["api"]["command"] and cfg["worker"]["command"][0] == "watchfiles"
    mount = next(v for v in cfg["api"]["volumes"] if v["target"] == "/app/bsopt")
    assert mount["read_only"] is True and mount["source"] == str(REPO / "src" / "bsopt")


def test_settings_read_the_credentials_from_the_files_compose_mounts(tmp_path):
    """What the services make of the environment compose/bsopt.yml gives them: the database URL
    from its file, the Redis user's password (quoted) from its file into both Redis URLs."""
    from bsopt.common.settings import Settings, SettingsError

    (tmp_path / "url").write_text("postgresql://bsopt:pw@postgres:5432/bsopt\n")
    (tmp_path / "redis").write_text("p@ss/w:rd")
    env = {"BSOPT_DATABASE_URL_FILE": str(tmp_path / "url"), "BSOPT_DATABASE_URL": "postgresql://ignored",
           "BSOPT_REDIS_URL": "redis://redis:6379/0", "BSOPT_RESULT_URL": "redis://redis:6379/1",
           "BSOPT_REDIS_USERNAME": "api", "BSOPT_REDIS_PASSWORD_FILE": str(tmp_path / "redis")}
    s = Settings.from_env(env)
    assert s.database_url == "postgresql://bsopt:pw@postgres:5432/bsopt"
    assert s.redis_url == "redis://api:p%40ss%2Fw%3Ard@redis:6379/0"
    assert s.result_url == "redis://api:p%40ss%2Fw%3Ard@redis:6379/1"
    import redis

    assert redis.Redis.from_url(s.redis_url).connection_pool.connection_kwargs["password"] == "p@ss/w:rd"
    # without files (a host run): the plain settings, no credentials added
    assert Settings.from_env({"BSOPT_REDIS_URL": "redis://h:1/0"}).result_url == "redis://h:1/1"
    with pytest.raises(SettingsError, match=r"BSOPT_REDIS_PASSWORD_FILE=/nonexistent: No such file"):
        Settings.from_env({**env, "BSOPT_REDIS_PASSWORD_FILE": "/nonexistent"})
