"""The command line is the one place the user's FXSTACK_* overrides are read: they become fields
of a Target, and the hints `up` and `down` print name the command the user typed."""

from __future__ import annotations

import os

import pytest

from fxstack.cli import build_parser
from fxstack.stack.commands import target_from_args
from fxstack.stacks.bsopt import BSOPT
from fxstack.stacks.fx import FX

pytestmark = pytest.mark.unit
OVERRIDES = ("FXSTACK_PROJECT", "FXSTACK_ENV_FILE", "FXSTACK_SECRETS_DIR", "FXSTACK_COMPOSE_FILES", "FXSTACK_CLI")


def test_no_override_is_the_stacks_own_defaults(monkeypatch):
    for var in OVERRIDES:
        monkeypatch.delenv(var, raising=False)
    target = target_from_args(build_parser().parse_args(["down", "bsopt"]))
    assert target.stack is BSOPT and target.project_name == "bsopt"
    assert target.env_path.name == "bsopt.env" and target.secrets_path == target.env_path.parent / "secrets"
    assert target.cmd("down", "--volumes") == "fxstack down bsopt --volumes"


def test_overrides_are_read_once_into_the_target(monkeypatch, tmp_path):
    extra = tmp_path / "extra.yml"
    extra.write_text("services: {}\n")
    monkeypatch.setenv("FXSTACK_PROJECT", "mine")
    monkeypatch.setenv("FXSTACK_ENV_FILE", str(tmp_path / "my.env"))
    monkeypatch.setenv("FXSTACK_SECRETS_DIR", str(tmp_path / "s"))
    monkeypatch.setenv("FXSTACK_COMPOSE_FILES", os.pathsep.join([str(extra)]))
    monkeypatch.setenv("FXSTACK_CLI", "./fx")
    target = target_from_args(build_parser().parse_args(["up", "--gpu"]), ("gpu",))
    before = dict(os.environ)
    assert target.stack is FX and target.project_name == "mine"
    assert target.env_path == tmp_path / "my.env" and target.secrets_path == tmp_path / "s"
    assert [f.name for f in target.files] == ["docker-compose.yml", "docker-compose.gpu.yml", "extra.yml"]
    assert target.cmd("up") == "./fx up" and target.cmd("down", "--volumes") == "./fx down --volumes"
    assert dict(os.environ) == before  # choosing a stack writes nothing to the environment


def test_logs_takes_a_stack_then_a_service():
    from fxstack.errors import FxError
    from fxstack.stack.commands import stack_and_service

    for argv, want in ((["logs"], (None, None)), (["logs", "api"], (None, "api")),
                       (["logs", "bsopt"], ("bsopt", None)), (["logs", "bsopt", "api"], ("bsopt", "api"))):
        args = build_parser().parse_args(argv)
        assert stack_and_service(args.stack, args.service) == want, argv
    with pytest.raises(FxError, match="no stack named 'nope'"):
        stack_and_service("nope", "api")
