"""The security tier on the bsopt stack: the checks tests/security/test_hardening.py makes on the
FX stack, where they take effect (the kernel's view of every process, Docker's record of every
container and image, real clients refused by Redis and Postgres), and a `kill -9` of every
service's main process with nothing lost (Postgres rows, dead letters, model versions).

The stack is its own project (`bsopt-sec`), from nothing, removed with its volumes at the end.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
import time

import pytest
import requests

from fxstack.envfile import read_env
from fxstack.stack import docker_state as ds
from fxstack.stacks.bsopt import BSOPT

from .procs import container_pids, kill_and_wait, main_pid, proc_status, user_namespace, wait_for
from .secret_scan import secret_values as scanned_secrets

pytestmark = [pytest.mark.security, pytest.mark.integration]
PROJECT = "bsopt-sec"
LONG_RUNNING = {"postgres", "redis", "quote-board", "api", "neural-pricing", "worker", "scraper"}


@pytest.fixture(scope="module")
def bsopt(docker_client, tmp_path_factory):
    from fxstack.stack import lifecycle
    from fxstack.stack.target import Target
    from fxstack.workflow.ensure import ensure_images

    ensure_images(["bsopt-api", "bsopt-neural-pricing", "bsopt-worker", "bsopt-scraper", "postgres", "redis"],
                  progress=lambda m: print(m, file=sys.stderr))
    target = Target(BSOPT, project=PROJECT, env_file=tmp_path_factory.mktemp("bsopt-sec") / "bsopt.env",
                    overrides={v: str(ds.free_port()) for v in ("BSOPT_API_PORT", "BSOPT_PRICING_PORT")})
    try:
        lifecycle.down(target, volumes=True, out=sys.stderr)
        lifecycle.up(target, build=False, timeout=600, out=sys.stderr)
        yield target
    finally:
        if os.environ.get("FXSTACK_KEEP_STACK") != "1":
            try:
                lifecycle.down(target, volumes=True, out=sys.stderr)
            except Exception as exc:  # teardown must not hide the result
                print(f"teardown: {exc}", file=sys.stderr)


def running(dc) -> dict:
    return {c.labels["com.docker.compose.service"]: c for c in ds.project_containers(dc, PROJECT, all_=False)}


def secret_values(target) -> dict[str, str]:
    return scanned_secrets(BSOPT, read_env(target.env_path))


# ------------------------------------------------------------------ least privilege
def test_every_process_non_root_without_capabilities(bsopt, docker_client):
    containers = running(docker_client)
    assert set(containers) == LONG_RUNNING
    sandboxed = 0
    for svc, c in containers.items():
        user = c.image.attrs["Config"].get("User") or ""
        assert user and user.split(":")[0] not in ("0", "root"), (svc, user)
        host = c.attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd") and not host.get("Privileged"), svc
        assert "no-new-privileges:true" in host["SecurityOpt"], svc
        assert not any("unconfined" in o for o in host["SecurityOpt"]), (svc, host["SecurityOpt"])
        container_ns = user_namespace(c.attrs["State"]["Pid"])
        for pid in container_pids(c):
            st = proc_status(pid)
            assert "0" not in st["Uid"].split(), f"{svc}: process {pid} has uid 0 ({st['Uid']})"
            assert st["NoNewPrivs"] == "1", f"{svc}: process {pid} may gain privileges"
            assert int(st["CapBnd"], 16) == 0 or user_namespace(pid) != container_ns, (svc, pid, st["CapBnd"])
            if user_namespace(pid) != container_ns:
                # Chromium's sandbox: capabilities over a user namespace of its own (no mount,
                # no setns: the seccomp profile still refuses them), never over the container's
                assert svc == "scraper", f"{svc}: process {pid} in a user namespace of its own"
                sandboxed += 1
                continue
            for cap in ("CapInh", "CapPrm", "CapEff", "CapAmb"):
                assert int(st[cap], 16) == 0, f"{svc}: process {pid} {cap}={st[cap]}"
    assert sandboxed >= 1, "no Chromium process runs in its sandbox's user namespace"
    seccomp = running(docker_client)["scraper"].attrs["HostConfig"]["SecurityOpt"]
    assert any(o.startswith("seccomp={") and "bsopt: Chromium" in o for o in seccomp)


def test_read_only_roots_limits_rotated_logs_loopback_ports(bsopt, docker_client):
    published = set()
    for svc, c in running(docker_client).items():
        host = c.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True, svc
        assert host["Memory"] > 0 and host["PidsLimit"] > 0, svc
        assert host["LogConfig"]["Type"] == "json-file" and host["LogConfig"]["Config"].get("max-size"), svc
        rc, out = c.exec_run(["python3", "-c", "open('/bsopt-write-probe', 'w')"]) if svc not in (
            "postgres", "redis") else c.exec_run(["touch", "/bsopt-write-probe"])
        assert rc != 0 and b"Read-only file system" in out, (svc, rc, out[-200:])
        for bindings in (c.attrs["NetworkSettings"]["Ports"] or {}).values():
            for b in bindings or []:
                assert b["HostIp"] == "127.0.0.1", (svc, b)
                published.add(svc)
    assert published == {"api", "neural-pricing"}


# ------------------------------------------------------------------ secrets
def test_no_secret_in_docker_inspect_images_environments_or_command_lines(bsopt, docker_client):
    secrets_ = secret_values(bsopt)
    assert set(BSOPT.secret_keys) <= set(secrets_), "every secret key of the stack is looked for"
    for svc, c in running(docker_client).items():
        image = c.image
        recorded = json.dumps(c.attrs) + json.dumps(image.attrs) + json.dumps(image.history())
        pids = container_pids(c)
        cmdlines = b"\n".join(open(f"/proc/{pid}/cmdline", "rb").read() for pid in pids)
        environs = b"\n".join(open(f"/proc/{pid}/environ", "rb").read() for pid in pids)
        for key, value in secrets_.items():
            assert value not in recorded, f"{svc}: {key} is in docker inspect (container or image)"
            assert value.encode() not in cmdlines, f"{svc}: {key} is on a process's command line"
            assert value.encode() not in environs, f"{svc}: {key} is in a process's environment"
        env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
        assert not [k for k in env if re.search(r"PASSWORD|SECRET|TOKEN|_KEY", k) and not k.endswith("_FILE")], svc
        assert not [k for k, v in env.items() if re.search(r"://[^/\s:@]+:[^@\s]+@", v)], svc


def test_secret_files_are_0600_and_owned_by_their_reader(bsopt, docker_client):
    directory = bsopt.secrets_path
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    mounted = set()
    for svc, c in running(docker_client).items():
        uid = int(proc_status(main_pid(c))["Uid"].split()[1])
        for mount in c.attrs["Mounts"]:
            if mount["Destination"].startswith("/run/secrets/"):
                st = os.stat(mount["Source"])
                assert os.path.dirname(mount["Source"]) == str(directory), (svc, mount["Source"])
                assert stat.S_IMODE(st.st_mode) == 0o600, (svc, mount["Source"], oct(st.st_mode))
                assert st.st_uid == uid, f"{svc}: {mount['Source']} owned by {st.st_uid}, the service runs as {uid}"
                mounted.add(os.path.basename(mount["Source"]))
    # db-init's two files are mounted in a container that has exited
    assert mounted | {"bsopt_db_password"} == set(BSOPT.secret_files)


REDIS_PROBE = """
import json, redis
def run(user, password, *cmd):
    try:
        r = redis.Redis(host="redis", username=user, password=password, socket_timeout=5)
        return repr(r.execute_command(*cmd))
    except Exception as e:
        return type(e).__name__ + ": " + str(e)
pw = open("/run/secrets/bsopt_redis_{user}_password").read()
print(json.dumps({{" ".join(c): run("{user}", pw, *c) for c in {cmds}}}))
print(json.dumps({{"nobody": run(None, None, "GET", "k"), "wrong": run("{user}", "wrong", "GET", "k")}}))
"""


def _redis_as(c, user: str, cmds: list[tuple[str, ...]]) -> tuple[dict, dict]:
    rc, out = c.exec_run(["python3", "-c", REDIS_PROBE.format(user=user, cmds=repr(cmds))])
    assert rc == 0, out.decode()[-2000:]
    allowed, refused = (json.loads(line) for line in out.decode().splitlines()[-2:])
    return allowed, refused


def test_redis_users_have_the_commands_they_use_and_no_others(bsopt, docker_client):
    c = running(docker_client)
    denied = ("NoPermissionError", "NOPERM")
    plan = {
        # user (service): (commands it may run, commands it may not)
        "api": ([("PING",), ("LRANGE", "bsopt:dead-letter", "0", "0"), ("GET", "x")],
                [("DEL", "bsopt:dead-letter"), ("BRPOP", "celery", "1"), ("KEYS", "*"), ("FLUSHALL",),
                 ("CONFIG", "GET", "*"), ("ACL", "LIST")]),
        "worker": ([("PING",), ("LLEN", "celery"), ("GET", "x")],
                   [("KEYS", "*"), ("FLUSHALL",), ("CONFIG", "GET", "*"), ("ACL", "LIST"), ("LRANGE", "celery", "0", "0"),
                    ("SCRIPT", "FLUSH"), ("SHUTDOWN",)]),
        "scraper": ([("PING",), ("SET", "bsopt:scrape:sec-probe", "1")],
                    [("LRANGE", "bsopt:dead-letter", "0", "0"), ("DEL", "bsopt:dead-letter"), ("GET", "x"),
                     ("KEYS", "*"), ("FLUSHALL",), ("CONFIG", "GET", "*")]),
    }
    for user, (may, may_not) in plan.items():
        allowed, refused = _redis_as(c[user], user, may + may_not)
        for cmd in may:
            assert not allowed[" ".join(cmd)].startswith(denied), (user, cmd, allowed[" ".join(cmd)])
        for cmd in may_not:
            assert allowed[" ".join(cmd)].startswith(denied), (user, cmd, allowed[" ".join(cmd)])
        assert "Authentication required" in refused["nobody"] or "NOAUTH" in refused["nobody"], refused
        assert "AuthenticationError" in refused["wrong"] or "WRONGPASS" in refused["wrong"], refused
    # the health check's user may PING and nothing else
    values = read_env(bsopt.env_path)
    for cmd, ok in ((["PING"], "PONG"), (["GET", "x"], "NOPERM"), (["INFO"], "NOPERM")):
        rc, out = c["redis"].exec_run(["redis-cli", "--user", "probe", "-h", "127.0.0.1", *cmd],
                                      environment={"REDISCLI_AUTH": values["BSOPT_REDIS_PROBE_PASSWORD"]})
        assert ok in out.decode(), (cmd, out)


def test_postgres_refuses_clients_without_credentials_and_has_no_unused_roles(bsopt, docker_client):
    api = running(docker_client)["api"]
    probe = ("import psycopg2\n"
             "for kw in ({}, {'password': 'wrong'}):\n"
             "    try:\n"
             "        psycopg2.connect(host='postgres', user='bsopt', dbname='bsopt', connect_timeout=5, **kw)\n"
             "        print('CONNECTED')\n"
             "    except psycopg2.OperationalError as e:\n"
             "        print(str(e).strip().splitlines()[-1])\n"
             "c = psycopg2.connect(open('/run/secrets/bsopt_database_url').read(), connect_timeout=5)\n"
             "cur = c.cursor(); cur.execute('SELECT rolname FROM pg_roles WHERE rolcanlogin ORDER BY 1')\n"
             "print(','.join(r[0] for r in cur.fetchall()))\n")
    rc, out = api.exec_run(["python3", "-c", probe])
    lines = out.decode().splitlines()
    assert rc == 0 and "CONNECTED" not in lines, lines
    assert "no password supplied" in lines[0] and "password authentication failed" in lines[1], lines
    assert lines[2] == "bsopt,postgres", lines    # FX_PG_ROLES=bsopt: no other role


# ------------------------------------------------------------------ kill -9, then nothing lost
def _job(api: str, task: str, args: dict) -> dict:
    job = requests.post(f"{api}/jobs", json={"task": task, "args": args}, timeout=10).json()["id"]
    deadline = time.monotonic() + 120
    while (s := requests.get(f"{api}/jobs/{job}", timeout=10).json())["state"] not in ("SUCCESS", "FAILURE"):
        assert time.monotonic() < deadline, s
        time.sleep(0.3)
    return s


def test_kill_9_of_every_service_loses_nothing(bsopt, docker_client):
    urls = bsopt.urls(["api", "neural-pricing"])
    api, pricing = urls["api"], urls["neural-pricing"]
    # Postgres rows (quotes through a scrape), a dead letter (Redis), a model version (the volume)
    sid = requests.post(f"{api}/scrapes", timeout=10).json()["id"]
    wait_for(lambda: requests.get(f"{api}/scrapes/{sid}", timeout=10).json()["state"] == "done", 120, "a scrape")
    assert _job(api, "price_batch", {"spot": -1, "strike": 100, "years": 1, "rate": 0.01,
                                     "volatility": 0.2})["state"] == "FAILURE"
    assert _job(api, "train_neural_pricer", {"samples": 500, "hidden": [8]})["state"] == "SUCCESS"
    wait_for(lambda: requests.get(f"{pricing}/model", timeout=10).status_code == 200, 60, "the model served")

    def snapshot() -> dict:
        # the rows by id and identity: the scraper's restart scrapes the board again, which updates
        # scraped_at (and the worker the IVs' computed_at) of the same rows
        quotes = requests.get(f"{api}/quotes", params={"limit": 10000}, timeout=10).json()["quotes"]
        return {"quotes": sorted((q["id"], q["source"], q["underlying"], q["option_type"], q["strike"], q["expiry"],
                                  q["bid"], q["ask"]) for q in quotes),
                "dead": requests.get(f"{api}/dead-letters", params={"limit": 100}, timeout=10).json()["dead_letters"],
                "versions": requests.get(f"{pricing}/model", timeout=10).json()["versions"]}

    before = snapshot()
    assert len(before["quotes"]) == 54 and before["dead"] and before["versions"]
    time.sleep(1.5)   # Redis' append-only file is written every second (appendfsync everysec)

    # the data stores first, one at a time (everything else depends on them), then the rest at once
    kill_and_wait(docker_client, running(docker_client), ["postgres"])
    kill_and_wait(docker_client, running(docker_client), ["redis"])
    kill_and_wait(docker_client, running(docker_client), sorted(LONG_RUNNING - {"postgres", "redis"}))
    states = bsopt.states(docker_client)
    assert all(states[s].state == "running" and states[s].health == "healthy" for s in LONG_RUNNING), states

    urls = bsopt.urls(["api", "neural-pricing"])
    api, pricing = urls["api"], urls["neural-pricing"]
    assert snapshot() == before
    assert _job(api, "price_batch", {"spot": 100, "strike": 100, "years": 1, "rate": 0.01,
                                     "volatility": 0.2})["state"] == "SUCCESS"
