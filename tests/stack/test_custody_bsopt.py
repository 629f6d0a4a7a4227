"""Issue 19 on the bsopt stack (the smaller one; the code path is the FX stack's too): its data
kept across a second checkout with new secrets, two checkouts at once, and `git clean -xdf`.

One Compose project of its own (`bsopt-custody`), from nothing, removed with its volumes at the
end. The second checkout is a copy of compose/ in a temporary directory (what a second clone
holds; its src/ is not needed, the images are built). `git clean -xdf` is the loss of the env
file and the secrets directory (.fxstack, the image cache, is kept here: losing it only costs a
rebuild). Three bring-ups of the bsopt stack.
"""

from __future__ import annotations

import io
import secrets
import shutil
import sys
from pathlib import Path

import pytest

from fxstack.envfile import read_env
from fxstack.errors import FxError
from fxstack.stack import custody, lifecycle
from fxstack.stack.target import Target
from fxstack.stacks.bsopt import BSOPT

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
PROJECT = "bsopt-custody"


def psql(dc, target: Target, sql: str) -> str:
    """As the `bsopt` role with the password of the target's env file now."""
    pg = dc.containers.get(target.states(dc)["postgres"].container)
    rc, out = pg.exec_run(["psql", "-h", "127.0.0.1", "-U", "bsopt", "-d", "bsopt", "-tAc", sql],
                          environment={"PGPASSWORD": read_env(target.env_path)["BSOPT_DB_PASSWORD"]})
    assert rc == 0, out.decode()
    return out.decode().strip()


@pytest.fixture(scope="module")
def first(docker_client, tmp_path_factory, free_port):
    target = Target(BSOPT, project=PROJECT, env_file=tmp_path_factory.mktemp("first") / "bsopt.env",
                    overrides={"BSOPT_API_PORT": str(free_port()), "BSOPT_PRICING_PORT": str(free_port())})
    lifecycle.down(target, volumes=True, out=sys.stderr)
    try:
        yield target
    finally:
        lifecycle.down(target, volumes=True, out=sys.stderr)


def project_volumes(dc) -> set[str]:
    """Every volume a container of the project has mounted, named or anonymous."""
    containers = dc.containers.list(all=True, filters={"label": f"com.docker.compose.project={PROJECT}"})
    assert containers, f"no container of {PROJECT}"
    return {m["Name"] for c in containers for m in c.attrs.get("Mounts", []) if m.get("Type") == "volume"}


def test_data_stays_with_new_secrets_and_one_checkout_runs_at_a_time(first, docker_client, tmp_path):
    dc = docker_client
    lifecycle.up(first, build=True, timeout=600, out=sys.stderr)
    token = secrets.token_hex(8)
    psql(dc, first, "CREATE TABLE custody (token text)")
    psql(dc, first, f"INSERT INTO custody VALUES ('{token}')")

    # a second clone: its own compose/ and, on first up, its own new bsopt.env
    clone_root = tmp_path / "clone"
    shutil.copytree(REPO / "compose", clone_root / "compose", ignore=shutil.ignore_patterns("*.env", "secrets"))
    clone = first.but(root=clone_root, env_file=clone_root / "compose" / "bsopt.env", cli="./fx")

    # two checkouts at once: the second refuses before it starts anything, naming the first
    with pytest.raises(FxError) as err:
        lifecycle.up(clone, build=False, timeout=300, out=sys.stderr)
    text = str(err.value)
    assert f"running from another checkout: {REPO}" in text and f"cd {REPO} && ./fx down bsopt" in text, text
    out = io.StringIO()
    lifecycle.status(clone, out=out)
    assert f"running from another checkout: {REPO}" in out.getvalue()
    with pytest.raises(FxError, match="running from another checkout"):
        lifecycle.test(clone, out=io.StringIO())
    # down acts on the project's one stack, whichever checkout started it, and says whose it was
    mounted = project_volumes(dc)
    out = io.StringIO()
    lifecycle.down(clone, out=out)
    assert f"ran from the checkout {REPO}" in out.getvalue()
    assert not first.states(dc)
    # what `down` keeps is the project's named volumes, nothing anonymous (an image's VOLUME a
    # container got without a mount there: no later up finds it again, so each down left one).
    # The volumes its containers had, not a machine-wide before and after: another process's
    # stack may come and go meanwhile (tests/parallel.py).
    kept = {v.name for v in dc.volumes.list()} & mounted
    assert kept and all(name.startswith(f"{PROJECT}_") for name in kept), sorted(kept)

    # the second clone with the volumes kept: new secrets, the data is there, the roles follow
    out = io.StringIO()
    lifecycle.up(clone, build=False, timeout=600, out=out)
    assert "BSOPT_DB_PASSWORD" in out.getvalue() and "set them to the values in" in out.getvalue(), out.getvalue()
    assert read_env(clone.env_path)["BSOPT_DB_PASSWORD"] != read_env(first.env_path)["BSOPT_DB_PASSWORD"]
    assert psql(dc, clone, f"SELECT count(*) FROM custody WHERE token = '{token}'") == "1"
    record = custody.read_record(dc, clone)
    assert record.checkout == str(clone_root) and record.env_file == str(clone.env_path)

    # `git clean -xdf` in that clone: env file and secrets gone, new ones written, data kept
    lifecycle.down(clone, out=sys.stderr)
    clone.env_path.unlink()
    shutil.rmtree(clone.secrets_path)
    lifecycle.up(clone, build=False, timeout=600, out=sys.stderr)
    assert psql(dc, clone, f"SELECT count(*) FROM custody WHERE token = '{token}'") == "1"

    # start over: down --volumes removes the data and the record
    lifecycle.down(clone, volumes=True, out=sys.stderr)
    assert custody.read_record(dc, clone) is None and not custody.existing_data(dc, clone)
