"""The security tier: the running stack (the session's `fxstack-it` stack) held to least
privilege, checked where it takes effect: the kernel's view of every process (/proc), Docker's
record of every container, and real clients refused by Redis and Postgres.

The fault test comes last in this module: `kill -9` of each service's main process, then every
service healthy again with nothing lost (a registered model, Airflow's run history, the Redis
online store's keys, a Postgres row).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import stat
from pathlib import Path

import pytest
import requests

from fxstack.envfile import read_env
from fxstack.stack import docker_state as ds
from fxstack.stacks.fx import FX

from .procs import container_pids, kill_and_wait, proc_status
from .secret_scan import secret_values as scanned_secrets

pytestmark = [pytest.mark.security, pytest.mark.integration]

# the session stack's project (tests/conftest.py names it the same way)
PROJECT = os.environ.get("FXSTACK_TEST_PROJECT", "fxstack-it")
LONG_RUNNING = {"postgres", "redis", "airflow-scheduler", "airflow-webserver", "airflow-worker", "mlflow",
                "fastapi", "prometheus", "statsd-exporter", "redis-exporter"}


def running(dc) -> dict:
    """service -> container (reloaded), for the stack's running services."""
    out = {}
    for c in ds.project_containers(dc, PROJECT, all_=False):
        out[c.labels["com.docker.compose.service"]] = c
    return out


def secret_values(env_file: Path) -> dict[str, str]:
    return scanned_secrets(FX, read_env(env_file))


# ------------------------------------------------------------------ least privilege
def test_every_service_runs_as_its_images_non_root_user(stack, docker_client):
    containers = running(docker_client)
    assert set(containers) == LONG_RUNNING
    for svc, c in containers.items():
        image_user = c.image.attrs["Config"].get("User") or ""
        assert image_user and image_user.split(":")[0] not in ("", "0", "root"), (svc, image_user)
        assert not c.attrs["Config"].get("User") or c.attrs["Config"]["User"] == image_user, svc
        for pid in container_pids(c):
            uids = proc_status(pid)["Uid"].split()
            assert "0" not in uids, f"{svc}: process {pid} has uid 0 ({uids})"


def test_no_capabilities_and_no_new_privileges_in_every_process(stack, docker_client):
    for svc, c in running(docker_client).items():
        host = c.attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd"), svc
        assert "no-new-privileges:true" in (host.get("SecurityOpt") or []), svc
        assert not host.get("Privileged"), svc
        for pid in container_pids(c):
            st = proc_status(pid)
            for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(st[cap], 16) == 0, f"{svc}: process {pid} {cap}={st[cap]}"
            assert st["NoNewPrivs"] == "1", f"{svc}: process {pid} may gain privileges"


def test_root_filesystems_are_read_only_and_limits_are_set(stack, docker_client):
    for svc, c in running(docker_client).items():
        host = c.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True, svc
        assert host["Memory"] > 0 and host["PidsLimit"] > 0, svc
        assert host["LogConfig"]["Type"] == "json-file" and host["LogConfig"]["Config"].get("max-size"), svc
        rc, out = c.exec_run(["touch", "/fx-write-probe"])
        assert rc != 0 and b"Read-only file system" in out, (svc, rc, out[:200])


def test_ports_are_published_on_loopback_only(stack, docker_client):
    published = set()
    for svc, c in running(docker_client).items():
        for bindings in (c.attrs["NetworkSettings"]["Ports"] or {}).values():
            for b in bindings or []:
                assert b["HostIp"] == "127.0.0.1", (svc, b)
                published.add(svc)
    assert published == {"airflow-webserver", "mlflow", "fastapi", "prometheus"}


# ------------------------------------------------------------------ secrets
def test_no_secret_in_docker_inspect_or_on_a_command_line(stack, docker_client):
    secrets_ = secret_values(stack["env_file"])
    assert set(FX.secret_keys) <= set(secrets_), "every secret key of the stack is looked for"
    for svc, c in running(docker_client).items():
        inspected = json.dumps(c.attrs) + json.dumps(c.image.attrs)
        cmdlines = b"\n".join(Path(f"/proc/{pid}/cmdline").read_bytes() for pid in container_pids(c))
        for key, value in secrets_.items():
            assert value not in inspected, f"{svc}: {key} is in docker inspect"
            assert value.encode() not in cmdlines, f"{svc}: {key} is on a process's command line"
        env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
        # no variable that holds a password or key (their *_FILE / *_CMD forms name a path) ...
        assert not [k for k in env if k.endswith(("PASSWORD", "_KEY"))], (svc, sorted(env))
        # ... and no URL with credentials in it
        assert not [k for k, v in env.items() if re.search(r"://[^/\s:@]+:[^@\s]+@", v)], svc


def test_secret_files_are_0600_and_owned_by_their_reader(stack, docker_client):
    directory = stack["target"].secrets_path
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    for svc, c in running(docker_client).items():
        pid = container_pids(c)[-1]
        uid = int(proc_status(pid)["Uid"].split()[1])
        for mount in c.attrs["Mounts"]:
            if not mount["Destination"].startswith("/run/secrets/"):
                continue
            st = Path(mount["Source"]).stat()
            assert Path(mount["Source"]).parent == directory, (svc, mount["Source"])
            assert stat.S_IMODE(st.st_mode) == 0o600, (svc, mount["Source"], oct(st.st_mode))
            assert st.st_uid == uid, f"{svc}: {mount['Source']} owned by {st.st_uid}, the service runs as {uid}"


def test_redis_refuses_clients_without_credentials(stack, docker_client):
    api = running(docker_client)["fastapi"]
    probe = ("import os, redis\n"
             "def run(**kw):\n"
             "    try:\n"
             "        return repr(redis.Redis(host='redis', socket_timeout=5, **kw).get('k'))\n"
             "    except Exception as e:\n"
             "        return type(e).__name__ + ': ' + str(e)\n"
             "pw = open('/run/secrets/api_redis_password').read()\n"
             "print(run())\n"
             "print(run(username='api', password='wrong'))\n"
             "print(run(username='api', password=pw))\n")
    rc, out = api.exec_run(["python3", "-c", probe])
    lines = out.decode().splitlines()
    assert rc == 0, out.decode()
    assert "Authentication required" in lines[0], lines           # no credentials: NOAUTH
    assert "AuthenticationError" in lines[1] or "WRONGPASS" in lines[1], lines
    assert lines[2] == "None", lines                               # the API's own login reads
    rc, out = api.exec_run(["python3", "-c",
                            "import redis; pw = open('/run/secrets/api_redis_password').read()\n"
                            "try:\n    redis.Redis(host='redis', username='api', password=pw).set('k', 'v')\n"
                            "except Exception as e:\n    print(type(e).__name__, e)\n"])
    assert b"NoPermissionError" in out or b"NOPERM" in out, out     # ... and may not write


def test_postgres_refuses_clients_without_credentials(stack, docker_client):
    worker = running(docker_client)["airflow-worker"]
    probe = ("import psycopg2\n"
             "for kw in ({}, {'password': 'wrong'}):\n"
             "    try:\n"
             "        psycopg2.connect(host='postgres', user='airflow', dbname='airflow', connect_timeout=5, **kw)\n"
             "        print('CONNECTED')\n"
             "    except psycopg2.OperationalError as e:\n"
             "        print(str(e).strip().splitlines()[-1])\n")
    rc, out = worker.exec_run(["python3", "-c", probe])
    lines = out.decode().splitlines()
    assert rc == 0 and "CONNECTED" not in lines, lines
    assert "no password supplied" in lines[0], lines
    assert "password authentication failed" in lines[1], lines


# ------------------------------------------------------------------ kill -9, then nothing lost
def test_kill_9_of_every_service_loses_nothing(stack, docker_client):
    from fxstack.stacks import fx_e2e as e2e

    dc = docker_client
    ep = e2e.endpoints(stack["target"])
    values = read_env(stack["env_file"])
    token = secrets.token_hex(6)

    history = e2e.leave_history(ep, f"fxsec-{token}")
    # the Redis online store (db 0): a feature-row-like hash, next to whatever Feast wrote there

    def redis_cli(*args: str) -> str:
        rc, out = running(dc)["redis"].exec_run(["redis-cli", "--user", "airflow", "-h", "127.0.0.1", *args],
                                                environment={"REDISCLI_AUTH": values["REDIS_AIRFLOW_PASSWORD"]})
        assert rc == 0, out
        return out.decode().strip()

    assert redis_cli("HSET", f"fxsec:{token}", "close", "1.0842", "rsi_14", "55.1") == "2"

    def redis_snapshot() -> dict:
        """Every key of db 0 (Feast's keys are binary) with its serialised value, read by the API's
        own Redis user from inside the API container."""
        code = ("import json, redis\n"
                "r = redis.Redis(host='redis', username='api', password=open('/run/secrets/api_redis_password').read())\n"
                "print(json.dumps({k.hex(): r.dump(k).hex() for k in r.scan_iter(count=1000)}, sort_keys=True))\n")
        rc, out = running(dc)["fastapi"].exec_run(["python3", "-c", code])
        assert rc == 0, out
        return json.loads(out)

    before = redis_snapshot()
    assert f"fxsec:{token}".encode().hex() in before

    # the data stores first (one at a time: everything else depends on them), then all the rest at once
    kill_and_wait(dc, running(dc), ["postgres"])
    kill_and_wait(dc, running(dc), ["redis"])
    kill_and_wait(dc, running(dc), sorted(LONG_RUNNING - {"postgres", "redis"}))
    states = ds.service_states(dc, PROJECT)
    assert all(states[s].state == "running" and states[s].health == "healthy" for s in LONG_RUNNING), states

    assert redis_snapshot() == before
    ep = e2e.endpoints(stack["target"])
    e2e.history_kept(ep, history)
    assert requests.get(f"{ep.api}/health", timeout=10).status_code == 200
