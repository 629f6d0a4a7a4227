"""Issue 19 on the FX stack (the session's stack, left running as it was found): Airflow's Fernet
key is bound to the data, so a second clone, a deleted env file or `git clean -xdf` stops `up`
before anything starts, with what to restore; with the env file back (and every password in it
changed) the registered model and the Airflow run history are still there.

One bring-up of the FX stack. The second clone is a copy of compose/ in a temporary directory;
`git clean -xdf` is the loss of the env file and the secrets directory (.fxstack, the image cache,
is kept: losing it only costs a rebuild).
"""

from __future__ import annotations

import io
import re
import secrets
import shutil
import sys
from pathlib import Path

import pytest

from fxstack.envfile import new_password, read_env
from fxstack.errors import FxError
from fxstack.stack import lifecycle
from fxstack.stacks import fx_e2e as e2e

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]


def test_fernet_key_stays_with_the_data_and_passwords_follow_the_env_file(stack, docker_client, tmp_path):
    dc = docker_client
    target = stack["target"]
    project = target.project_name
    ep = e2e.endpoints(target)
    token = secrets.token_hex(6)
    history = e2e.leave_history(ep, f"keep-{token}")

    # two checkouts at once: a second clone refuses while this one runs
    clone_root = tmp_path / "clone"
    shutil.copytree(REPO / "compose", clone_root / "compose", ignore=shutil.ignore_patterns("*.env", "secrets"))
    clone = target.but(root=clone_root, env_file=clone_root / "compose" / ".env")
    with pytest.raises(FxError, match=re.escape(f"running from another checkout: {REPO}")):
        lifecycle.up(clone, build=False, out=sys.stderr)

    lifecycle.down(target, out=sys.stderr)  # volumes kept

    # the second clone, volumes kept: a new compose/.env, so a new Fernet key: refused, nothing started
    with pytest.raises(FxError) as err:
        lifecycle.up(clone, build=False, out=sys.stderr)
    text = str(err.value)
    for part in (f"{project}_pgdata", "AIRFLOW_FERNET_KEY", f"checkout {REPO}", str(clone.env_path),
                 f"cp {target.env_path} {clone.env_path}", "down --volumes", "deletes the data"):
        assert part in text, (part, text)
    assert not target.states(dc), "nothing may start before the check"

    # `git clean -xdf` (or a deleted env file) in this checkout: refused the same way
    saved = read_env(target.env_path)
    target.env_path.unlink()
    shutil.rmtree(target.secrets_path)
    with pytest.raises(FxError, match="AIRFLOW_FERNET_KEY differs"):
        lifecycle.up(target, build=False, out=sys.stderr)
    assert not target.states(dc)

    # the env file restored with its Fernet key, every password in it new: the services take them
    changed = {k: new_password() for k in ("POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD",
                                           "REDIS_AIRFLOW_PASSWORD", "REDIS_API_PASSWORD",
                                           "REDIS_EXPORTER_PASSWORD", "REDIS_PROBE_PASSWORD")}
    target.env_path.write_text("".join(f"{k}={v}\n" for k, v in {**saved, **changed}.items()))
    target.env_path.chmod(0o600)
    out = io.StringIO()
    lifecycle.up(target, build=False, timeout=900, out=out)
    assert "POSTGRES_PASSWORD" in out.getvalue() and "set them to the values in" in out.getvalue()
    ep = e2e.endpoints(target)
    e2e.history_kept(ep, history)
