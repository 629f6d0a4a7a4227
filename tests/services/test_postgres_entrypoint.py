"""images/files/postgres/fx-postgres-entrypoint against a real PostgreSQL 15 (Debian's
postgresql-15), run as the `postgres` user with a temporary PGDATA and port."""
from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import REPO, free_port, wait_for_port

pytestmark = pytest.mark.integration

PGBIN = Path("/usr/lib/postgresql/15/bin")
SCRIPT = REPO / "images" / "files" / "postgres" / "fx-postgres-entrypoint"
PASSWORDS = {"POSTGRES_PASSWORD": "su per'secret", "AIRFLOW_DB_PASSWORD": "air;flow pw",
             "MLFLOW_DB_PASSWORD": 'ml"flow$pw'}


def _postgres_user():
    if not (PGBIN / "postgres").exists() or shutil.which("psql") is None and \
            not (PGBIN / "psql").exists():
        pytest.skip("PostgreSQL 15 not installed (apt-get install postgresql-15)")
    if os.getuid() == 0:
        try:
            return pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("no 'postgres' user to run the server as")
    return pwd.getpwuid(os.getuid())


@pytest.fixture
def pg():
    import tempfile

    user = _postgres_user()
    # not under pytest's tmp_path: that is private to the test's user (0700)
    root = Path(tempfile.mkdtemp(prefix="fx-pg-"))
    os.chmod(root, 0o755)
    (root / "sock").mkdir()
    shutil.copy(SCRIPT, root / "entrypoint")
    os.chmod(root / "entrypoint", 0o755)
    for p in [root, root / "sock"]:
        os.chown(p, user.pw_uid, user.pw_gid) if os.getuid() == 0 else None
    procs = []

    def start(env_extra: dict, wait: bool = True):
        port = env_extra.pop("_port", None) or free_port()
        env = {"PATH": f"{PGBIN}:/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8",
               "PGDATA": str(root / "data"), "PGPORT": str(port),
               "FX_PG_SOCKET_DIR": str(root / "sock"), "HOME": str(root)}
        env.update(env_extra)
        log = root / f"log{len(procs)}.txt"
        cmd = [str(root / "entrypoint")]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", user.pw_name, "--"] + ["env", "-i"] + \
                  [f"{k}={v}" for k, v in env.items()] + cmd
            env = None
        with log.open("w") as fh:
            proc = subprocess.Popen(cmd, env=env, stdout=fh, stderr=subprocess.STDOUT)
        procs.append(proc)
        if wait:
            wait_for_port(port, 90, proc, log)
            _wait_accepting(port)
        return proc, port, log

    yield {"start": start, "root": root}
    for proc in procs:
        if proc.poll() is None:
            _stop(proc, root / "data")
    shutil.rmtree(root, ignore_errors=True)


def _wait_accepting(port):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = subprocess.run([str(PGBIN / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)],
                           capture_output=True)
        if r.returncode == 0:
            return
        time.sleep(0.3)
    raise TimeoutError("postgres does not accept connections")


def _stop(proc, pgdata: Path):
    # runuser forks: signal the postmaster itself (its pid is in postmaster.pid)
    pidfile = pgdata / "postmaster.pid"
    if pidfile.exists():
        pid = int(pidfile.read_text().splitlines()[0])
        try:
            os.kill(pid, signal.SIGINT)  # fast shutdown
        except ProcessLookupError:
            pass
    else:
        proc.send_signal(signal.SIGINT)
    proc.wait(30)


def psql(port, user, password, db, sql):
    env = {"PGPASSWORD": password, "PATH": os.environ.get("PATH", ""), "PGCONNECT_TIMEOUT": "5"}
    return subprocess.run([str(PGBIN / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                           "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", db, "-c", sql],
                          env=env, capture_output=True, text=True, timeout=30)


def test_first_start_creates_roles_and_databases_then_restart_keeps_them(pg):
    proc, port, log = pg["start"](dict(PASSWORDS))
    text = log.read_text()
    assert "initialising a new cluster" in text and "setup complete" in text

    r = psql(port, "airflow", PASSWORDS["AIRFLOW_DB_PASSWORD"], "airflow",
             "CREATE TABLE dag_probe(x int); INSERT INTO dag_probe VALUES (42); "
             "SELECT current_user, current_database()")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "airflow|airflow"
    r = psql(port, "mlflow", PASSWORDS["MLFLOW_DB_PASSWORD"], "mlflow",
             "CREATE TABLE runs_probe(x int); SELECT current_user")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "mlflow"
    # each database is its role's: owner, and the other role may not even connect
    r = psql(port, "postgres", PASSWORDS["POSTGRES_PASSWORD"], "postgres",
             "SELECT datname || ':' || pg_get_userbyid(datdba) FROM pg_database "
             "WHERE datname IN ('airflow','mlflow') ORDER BY 1")
    assert r.stdout.split() == ["airflow:airflow", "mlflow:mlflow"]
    r = psql(port, "mlflow", PASSWORDS["MLFLOW_DB_PASSWORD"], "airflow", "SELECT 1")
    assert r.returncode != 0 and "permission denied for database" in r.stderr
    r = psql(port, "airflow", "wrong", "airflow", "SELECT 1")
    assert r.returncode != 0 and "password authentication failed" in r.stderr
    r = psql(port, "postgres", PASSWORDS["POSTGRES_PASSWORD"], "postgres",
             "SELECT rolname || ':' || rolsuper FROM pg_roles WHERE rolname IN "
             "('airflow','mlflow') ORDER BY 1; SHOW password_encryption")
    assert r.stdout.split() == ["airflow:false", "mlflow:false", "scram-sha-256"]
    hba = (pg["root"] / "data" / "pg_hba.conf").read_text()
    assert "0.0.0.0/0               scram-sha-256" in hba and "trust" not in \
        "".join(line for line in hba.splitlines() if not line.startswith("#"))

    _stop(proc, pg["root"] / "data")
    # restart on the same data directory, without any password in the environment
    proc2, port2, log2 = pg["start"]({"_port": port})
    assert "existing cluster" in log2.read_text()
    assert "initialising" not in log2.read_text()
    r = psql(port2, "airflow", PASSWORDS["AIRFLOW_DB_PASSWORD"], "airflow",
             "SELECT x FROM dag_probe")
    assert r.returncode == 0 and r.stdout.strip() == "42"


def test_passwords_from_files_with_none_in_the_environment(pg):
    """Compose secrets: each *_FILE names a file; the values never enter the environment."""
    user = _postgres_user()
    env = {}
    for name, value in PASSWORDS.items():
        path = pg["root"] / f"{name.lower()}.secret"
        path.write_text(value)  # as fxstack writes them: no trailing newline
        os.chmod(path, 0o600)
        if os.getuid() == 0:
            os.chown(path, user.pw_uid, user.pw_gid)
        env[f"{name}_FILE"] = str(path)
    proc, port, log = pg["start"](env)
    assert "setup complete" in log.read_text()
    r = psql(port, "mlflow", PASSWORDS["MLFLOW_DB_PASSWORD"], "mlflow", "SELECT current_user")
    assert r.returncode == 0 and r.stdout.strip() == "mlflow", r.stderr
    r = psql(port, "airflow", PASSWORDS["AIRFLOW_DB_PASSWORD"], "airflow", "SELECT 1")
    assert r.returncode == 0, r.stderr
    # the server's own environment has no password (postgres was exec'd by the script)
    pid = int((pg["root"] / "data" / "postmaster.pid").read_text().splitlines()[0])
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert not [e for e in environ if e.split(b"=")[0].endswith(b"PASSWORD")], environ
    assert not any(v.encode() in b"\0".join(environ) for v in PASSWORDS.values())


def test_a_password_file_that_cannot_be_read_is_named(pg):
    env = dict(PASSWORDS)
    del env["AIRFLOW_DB_PASSWORD"]
    env["AIRFLOW_DB_PASSWORD_FILE"] = str(pg["root"] / "absent.secret")
    proc, _, log = pg["start"](env, wait=False)
    assert proc.wait(60) != 0
    assert "AIRFLOW_DB_PASSWORD_FILE=" in log.read_text() and "absent.secret" in log.read_text()


def test_missing_password_on_first_start_fails_clearly(pg):
    env = dict(PASSWORDS)
    del env["MLFLOW_DB_PASSWORD"]
    proc, _, log = pg["start"](env, wait=False)
    assert proc.wait(60) != 0
    assert "MLFLOW_DB_PASSWORD is not set or empty" in log.read_text()
    assert not (pg["root"] / "data" / "PG_VERSION").exists()


def test_refuses_a_non_empty_directory_without_a_cluster(pg):
    data = pg["root"] / "data"
    data.mkdir()
    (data / "lost+found").mkdir()
    if os.getuid() == 0:
        pw = pwd.getpwnam("postgres")
        for p in (data, data / "lost+found"):
            os.chown(p, pw.pw_uid, pw.pw_gid)
    proc, _, log = pg["start"](dict(PASSWORDS), wait=False)
    assert proc.wait(60) != 0
    assert "is not empty but holds no cluster" in log.read_text()


def test_the_roles_are_a_parameter_and_a_changed_role_password_is_healed(pg):
    """FX_PG_ROLES names the application's roles (bsopt's stack: `bsopt`); no other role is made,
    and a later start with a new password for it sets that password on the kept data."""
    env = {"POSTGRES_PASSWORD": PASSWORDS["POSTGRES_PASSWORD"], "FX_PG_ROLES": "bsopt",
           "BSOPT_DB_PASSWORD": "b'sopt pw"}
    proc, port, log = pg["start"](dict(env))
    r = psql(port, "postgres", env["POSTGRES_PASSWORD"], "postgres",
             "SELECT rolname FROM pg_roles WHERE rolcanlogin ORDER BY 1")
    assert r.stdout.split() == ["bsopt", "postgres"], (r.stdout, r.stderr)
    r = psql(port, "bsopt", env["BSOPT_DB_PASSWORD"], "bsopt", "SELECT current_user, current_database()")
    assert r.returncode == 0 and r.stdout.strip() == "bsopt|bsopt", r.stderr
    _stop(proc, pg["root"] / "data")

    env["BSOPT_DB_PASSWORD"] = "a new one"
    proc2, port2, log2 = pg["start"]({**env, "_port": port})
    assert "passwords of postgres and bsopt set to the ones given" in log2.read_text()
    r = psql(port2, "bsopt", "a new one", "bsopt", "SELECT 1")
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("roles, message", [
    ("Bad-Name", "'Bad-Name' is not a plain lower-case role name"),
    ("postgres", "'postgres' is the superuser"),
    ("app", "APP_DB_PASSWORD is not set or empty"),
])
def test_a_wrong_role_list_is_refused_before_initdb(pg, roles, message):
    proc, _, log = pg["start"]({"POSTGRES_PASSWORD": "x", "FX_PG_ROLES": roles}, wait=False)
    assert proc.wait(60) != 0
    assert message in log.read_text()
    assert not (pg["root"] / "data" / "PG_VERSION").exists()


def test_refuses_to_run_as_root(tmp_path):
    if os.getuid() != 0:
        pytest.skip("needs root to check the root refusal")
    r = subprocess.run([str(SCRIPT)], env={"PATH": f"{PGBIN}:/usr/bin:/bin",
                                           "PGDATA": str(tmp_path / "d")},
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0 and "refusing to run as root" in r.stderr


@pytest.mark.unit
def test_script_is_bash_and_executable_in_git():
    head = SCRIPT.read_text().splitlines()[0]
    assert head in ("#!/usr/bin/env bash", "#!/bin/bash")
    assert os.access(SCRIPT, os.X_OK)
    r = subprocess.run(["git", "-C", str(REPO), "ls-files", "-s", str(SCRIPT)],
                       capture_output=True, text=True)
    if r.returncode == 0 and r.stdout:
        assert r.stdout.startswith("100755 ")
    r = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
