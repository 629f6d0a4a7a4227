"""Docker's credential config read the way `docker login` writes it, and REGISTRY/PREFIX parsing."""

from __future__ import annotations

import base64
import json
import os

import pytest

from fxstack.cluster.auth import credentials_for, parse_challenge
from fxstack.cluster.registry_client import Target
from fxstack.errors import FxError

pytestmark = pytest.mark.unit


def write(tmp_path, doc) -> os.PathLike:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(doc))
    return path


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


@pytest.mark.parametrize("key", ["reg.example:5000", "https://reg.example:5000", "https://reg.example:5000/v1/"])
def test_auths_entry_in_every_form_docker_writes(tmp_path, key):
    config = write(tmp_path, {"auths": {key: {"auth": b64("alice:pa:ss")}}})
    creds = credentials_for("reg.example:5000", config)
    assert (creds.username, creds.password) == ("alice", "pa:ss")  # only the first ':' splits
    assert credentials_for("other.example", config) is None


def test_no_config_means_no_credentials(tmp_path):
    assert credentials_for("reg.example", tmp_path / "absent.json") is None


def test_credential_helper_is_run_like_docker_runs_it(tmp_path, monkeypatch):
    helper = tmp_path / "bin" / "docker-credential-fxtest"
    helper.parent.mkdir()
    helper.write_text('#!/bin/sh\n[ "$1" = get ] || exit 1\nread host\n'
                      'printf \'{"ServerURL":"%s","Username":"bob","Secret":"s3cret"}\' "$host"\n')
    helper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{helper.parent}{os.pathsep}{os.environ['PATH']}")
    config = write(tmp_path, {"credHelpers": {"reg.example": "fxtest"}})
    creds = credentials_for("reg.example", config)
    assert (creds.username, creds.password) == ("bob", "s3cret")


def test_missing_credential_helper_is_a_clear_error(tmp_path):
    config = write(tmp_path, {"credsStore": "not-installed-here"})
    with pytest.raises(FxError, match="docker-credential-not-installed-here is not on PATH"):
        credentials_for("reg.example", config)


def test_bad_auth_value_names_the_key(tmp_path):
    config = write(tmp_path, {"auths": {"reg.example": {"auth": "%%%"}}})
    with pytest.raises(FxError, match="auths.reg.example.auth is not base64"):
        credentials_for("reg.example", config)


def test_bearer_challenge_parsed():
    c = parse_challenge('Bearer realm="https://auth.example/token",service="reg.example",'
                        'scope="repository:fx/api:pull,push"')
    assert c.scheme == "bearer"
    assert c.params == {"realm": "https://auth.example/token", "service": "reg.example",
                        "scope": "repository:fx/api:pull,push"}


def test_target_parse():
    t = Target.parse("Reg.Example:5000/team/fx/")
    assert (t.host, t.prefix, t.repo("fx-api")) == ("reg.example:5000", "team/fx", "team/fx/fx-api")
    assert Target.parse("localhost/fx").host == "localhost"
    assert Target.parse("reg.example:5000").repo("fx-api") == "fx-api"
    for bad in ("team/fx", "https://reg.example/fx"):
        with pytest.raises(FxError):
            Target.parse(bad)
