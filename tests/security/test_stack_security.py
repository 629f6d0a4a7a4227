"""The security tier, once for every registered stack: the running stack held to least privilege
where it takes effect (the kernel's view of every process in /proc, Docker's record of every
container and image, real clients refused by Redis and Postgres), then a `kill -9` of every
service's main process with nothing lost.

The FX stack is the session's (`fxstack-it`, tests/conftest.py); bsopt runs as its own project
(`bsopt-sec`), from nothing, removed with its volumes at the end. What differs between the stacks
is data (expected.py); the kill scenario of each stack is in faults.py. Per stack the tests run in
the order written here, the kill last.
"""

from __future__ import annotations

import json
import os
import re
import stat
import sys
from dataclasses import dataclass

import pytest

from fxstack.envfile import read_env
from fxstack.stack import docker_state as ds
from fxstack.stacks.registry import STACKS

from . import faults
from .expected import EXPECTED, Expected
from .procs import container_pids, main_pid, proc_status, user_namespace
from .secret_scan import secret_values

pytestmark = [pytest.mark.security, pytest.mark.integration]


@dataclass
class Secured:
    name: str
    target: object          # fxstack.stack.target.Target
    expected: Expected

    def running(self, dc) -> dict:
        """service -> container, for the stack's running services."""
        return {c.labels["com.docker.compose.service"]: c
                for c in ds.project_containers(dc, self.target.project_name, all_=False)}


def _bsopt_target(tmp_path_factory, free_port):
    from fxstack.stack.target import Target

    return Target(STACKS["bsopt"], project="bsopt-sec", env_file=tmp_path_factory.mktemp("bsopt-sec") / "bsopt.env",
                  overrides={v: str(free_port()) for v in ("BSOPT_API_PORT", "BSOPT_PRICING_PORT")})


@pytest.fixture(scope="module", params=sorted(EXPECTED))
def secured(request, docker_client, tmp_path_factory):
    name = request.param
    if name == "fx":
        yield Secured(name, request.getfixturevalue("stack")["target"], EXPECTED[name])
        return
    from fxstack.stack import lifecycle

    target = _bsopt_target(tmp_path_factory, request.getfixturevalue("free_port"))
    try:
        lifecycle.down(target, volumes=True, out=sys.stderr)
        lifecycle.up(target, build=True, timeout=600, out=sys.stderr)
        yield Secured(name, target, EXPECTED[name])
    finally:
        if os.environ.get("FXSTACK_KEEP_STACK") != "1":
            try:
                lifecycle.down(target, volumes=True, out=sys.stderr)
            except Exception as exc:  # teardown must not hide the result
                print(f"teardown: {exc}", file=sys.stderr)


def test_every_stack_is_checked():
    """A stack that is registered is held to this tier: its expectations are written down."""
    assert set(EXPECTED) == set(STACKS) == set(faults.SCENARIOS)


# ------------------------------------------------------------------ least privilege
def test_every_process_non_root_without_capabilities(secured, docker_client):
    containers = secured.running(docker_client)
    assert set(containers) == secured.expected.long_running
    sandboxed = set()
    for svc, c in containers.items():
        user = c.image.attrs["Config"].get("User") or ""
        assert user and user.split(":")[0] not in ("0", "root"), (svc, user)
        assert not c.attrs["Config"].get("User") or c.attrs["Config"]["User"] == user, svc
        host = c.attrs["HostConfig"]
        assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd") and not host.get("Privileged"), svc
        assert "no-new-privileges:true" in host["SecurityOpt"], svc
        assert not any("unconfined" in o for o in host["SecurityOpt"]), (svc, host["SecurityOpt"])
        container_ns = user_namespace(c.attrs["State"]["Pid"])
        for pid in container_pids(c):
            st = proc_status(pid)
            assert "0" not in st["Uid"].split(), f"{svc}: process {pid} has uid 0 ({st['Uid']})"
            assert st["NoNewPrivs"] == "1", f"{svc}: process {pid} may gain privileges"
            if user_namespace(pid) != container_ns:
                # Chromium's sandbox: capabilities over a user namespace of its own (no mount,
                # no setns: the seccomp profile still refuses them), never over the container's
                assert svc in secured.expected.sandboxed, f"{svc}: process {pid} in a user namespace of its own"
                sandboxed.add(svc)
                continue
            for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
                assert int(st[cap], 16) == 0, f"{svc}: process {pid} {cap}={st[cap]}"
    assert sandboxed == set(secured.expected.sandboxed), "a sandboxed service runs no process in its sandbox"
    for svc, profile in secured.expected.sandboxed.items():
        options = containers[svc].attrs["HostConfig"]["SecurityOpt"]
        assert any(o.startswith("seccomp={") and profile in o for o in options), (svc, options)


def _write_probe(c) -> tuple[int, bytes]:
    """Try to write to the root filesystem, with `touch` or, in an image without it, Python."""
    rc, out = c.exec_run(["touch", "/fxsec-write-probe"])
    if b"executable file not found" in out or b"no such file or directory" in out.lower():
        rc, out = c.exec_run(["python3", "-c", "open('/fxsec-write-probe', 'w')"])
    return rc, out


def test_read_only_roots_limits_rotated_logs_loopback_ports(secured, docker_client):
    published = set()
    for svc, c in secured.running(docker_client).items():
        host = c.attrs["HostConfig"]
        assert host["ReadonlyRootfs"] is True, svc
        assert host["Memory"] > 0 and host["PidsLimit"] > 0, svc
        assert host["LogConfig"]["Type"] == "json-file" and host["LogConfig"]["Config"].get("max-size"), svc
        rc, out = _write_probe(c)
        assert rc != 0 and b"Read-only file system" in out, (svc, rc, out[-200:])
        for bindings in (c.attrs["NetworkSettings"]["Ports"] or {}).values():
            for b in bindings or []:
                assert b["HostIp"] == "127.0.0.1", (svc, b)
                published.add(svc)
    assert published == secured.expected.published


# ------------------------------------------------------------------ secrets
def proc_file(pid: int, name: str) -> bytes:
    """/proc/PID/NAME, or nothing for a process that has exited since it was listed (a health
    check's, which lives a fraction of a second)."""
    try:
        with open(f"/proc/{pid}/{name}", "rb") as f:
            return f.read()
    except (FileNotFoundError, ProcessLookupError):
        return b""


def test_no_secret_in_docker_inspect_images_environments_or_command_lines(secured, docker_client):
    stack = STACKS[secured.name]
    secrets_ = secret_values(stack, read_env(secured.target.env_path))
    assert set(stack.secret_keys) <= set(secrets_), "every secret key of the stack is looked for"
    for svc, c in secured.running(docker_client).items():
        image = c.image
        recorded = json.dumps(c.attrs) + json.dumps(image.attrs) + json.dumps(image.history())
        pids = container_pids(c)
        cmdlines = b"\n".join(proc_file(pid, "cmdline") for pid in pids)
        environs = b"\n".join(proc_file(pid, "environ") for pid in pids)
        for key, value in secrets_.items():
            assert value not in recorded, f"{svc}: {key} is in docker inspect (container or image)"
            assert value.encode() not in cmdlines, f"{svc}: {key} is on a process's command line"
            assert value.encode() not in environs, f"{svc}: {key} is in a process's environment"
        env = dict(e.split("=", 1) for e in c.attrs["Config"]["Env"])
        # no variable that holds a secret (their *_FILE and *_CMD forms name a path or a command) ...
        assert not [k for k in env if re.search(r"PASSWORD|SECRET|TOKEN|_KEY", k)
                    and not k.endswith(("_FILE", "_CMD"))], (svc, sorted(env))
        # ... and no URL with credentials in it
        assert not [k for k, v in env.items() if re.search(r"://[^/\s:@]+:[^@\s]+@", v)], svc


def test_secret_files_are_0600_and_owned_by_their_reader(secured, docker_client):
    directory = secured.target.secrets_path
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    mounted = set()
    for svc, c in secured.running(docker_client).items():
        uid = int(proc_status(main_pid(c))["Uid"].split()[1])
        for mount in c.attrs["Mounts"]:
            if mount["Destination"].startswith("/run/secrets/"):
                st = os.stat(mount["Source"])
                assert os.path.dirname(mount["Source"]) == str(directory), (svc, mount["Source"])
                assert stat.S_IMODE(st.st_mode) == 0o600, (svc, mount["Source"], oct(st.st_mode))
                assert st.st_uid == uid, f"{svc}: {mount['Source']} owned by {st.st_uid}, the service runs as {uid}"
                mounted.add(os.path.basename(mount["Source"]))
    assert mounted | secured.expected.unmounted_secrets == set(STACKS[secured.name].secret_files)


REDIS_PROBE = """
import json, os, redis
def run(user, password, cmd):
    try:
        r = redis.Redis(host="redis", username=user, password=password, socket_timeout=5)
        return repr(r.execute_command(*cmd))
    except Exception as e:
        return type(e).__name__ + ": " + str(e)
plan = json.loads(os.environ["PLAN"])
print(json.dumps({user: [run(user, os.environ["PW_" + user], cmd) for cmd in cmds] for user, cmds in plan.items()}))
print(json.dumps({"nobody": run(None, None, ["GET", "k"]), "wrong": run("probe", "wrong", ["GET", "k"])}))
"""


def test_redis_users_have_the_commands_they_use_and_no_others(secured, docker_client):
    """Each Redis user of the stack tries what its client sends and what no client of ours may
    (from the stack's Python client container, with the user's password in the exec's environment)."""
    c = secured.running(docker_client)
    values = read_env(secured.target.env_path)
    users = secured.expected.redis_users
    plan = {user: [list(cmd) for cmd in u.may + u.may_not] for user, u in users.items()}
    env = {"PLAN": json.dumps(plan), **{f"PW_{user}": values[u.password_key] for user, u in users.items()}}
    rc, out = c[secured.expected.client].exec_run(["python3", "-c", REDIS_PROBE], environment=env)
    assert rc == 0, out.decode()[-2000:]
    answers, refused = (json.loads(line) for line in out.decode().splitlines()[-2:])
    denied = ("NoPermissionError", "NOPERM")
    for user, u in users.items():
        got = dict(zip((" ".join(cmd) for cmd in u.may + u.may_not), answers[user]))
        for cmd in u.may:
            assert not got[" ".join(cmd)].startswith(denied), (user, cmd, got[" ".join(cmd)])
        for cmd in u.may_not:
            assert got[" ".join(cmd)].startswith(denied), (user, cmd, got[" ".join(cmd)])
    assert "Authentication required" in refused["nobody"] or "NOAUTH" in refused["nobody"], refused
    assert "AuthenticationError" in refused["wrong"] or "WRONGPASS" in refused["wrong"], refused
    # the health check's user may PING and nothing else
    for cmd, ok in ((["PING"], "PONG"), (["GET", "x"], "NOPERM"), (["INFO"], "NOPERM")):
        rc, out = c["redis"].exec_run(["redis-cli", "--user", "probe", "-h", "127.0.0.1", *cmd],
                                      environment={"REDISCLI_AUTH": values[secured.expected.probe_password_key]})
        assert ok in out.decode(), (cmd, out)


PG_PROBE = """
import os, psycopg2
role, db = os.environ["ROLE"], os.environ["DB"]
for kw in ({}, {"password": "wrong"}):
    try:
        psycopg2.connect(host="postgres", user=role, dbname=db, connect_timeout=5, **kw)
        print("CONNECTED")
    except psycopg2.OperationalError as e:
        print(str(e).strip().splitlines()[-1])
c = psycopg2.connect(host="postgres", user=role, dbname=db, password=os.environ["PW"], connect_timeout=5)
cur = c.cursor(); cur.execute("SELECT rolname FROM pg_roles WHERE rolcanlogin ORDER BY 1")
print(",".join(r[0] for r in cur.fetchall()))
"""


def test_postgres_refuses_clients_without_credentials_and_has_no_unused_roles(secured, docker_client):
    role, db, key = secured.expected.postgres_login
    client = secured.running(docker_client)[secured.expected.client]
    env = {"ROLE": role, "DB": db, "PW": read_env(secured.target.env_path)[key]}
    rc, out = client.exec_run(["python3", "-c", PG_PROBE], environment=env)
    lines = out.decode().splitlines()
    assert rc == 0 and "CONNECTED" not in lines, lines
    assert "no password supplied" in lines[0] and "password authentication failed" in lines[1], lines
    assert lines[2] == secured.expected.postgres_roles, lines


# ------------------------------------------------------------------ kill -9, then nothing lost
def test_kill_9_of_every_service_loses_nothing(secured, docker_client):
    faults.SCENARIOS[secured.name](secured.target, docker_client, lambda: secured.running(docker_client),
                                   set(secured.expected.long_running))
