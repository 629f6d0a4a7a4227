"""Every registered stack is complete: what its value names exists in its Compose files and in
the repository, and what its Compose files need, its value provides. A new stack (one module in
src/fxstack/stacks/ and its entry in the registry, docs/adding-a-stack.md) is held to the same
checks by being registered."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from fxstack.envfile import secret_files
from fxstack.stack.commands import STACK_NAMES
from fxstack.stacks.registry import STACKS

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "compose"
ALL = sorted(STACKS)


def docs(stack) -> dict[str, dict]:
    """{file name: parsed YAML} of the stack's own and its variants' compose files."""
    names = list(stack.compose_files) + [f for v in stack.variants.values() for f in v.files]
    return {n: yaml.safe_load((COMPOSE / n).read_text()) or {} for n in names}


def services(stack) -> dict[str, dict]:
    merged: dict[str, dict] = {}
    for doc in docs(stack).values():
        for name, svc in (doc.get("services") or {}).items():
            merged.setdefault(name, {}).update(svc or {})
    return merged


def test_the_cli_offers_every_registered_stack():
    assert tuple(STACKS) == STACK_NAMES


@pytest.mark.parametrize("name", ALL)
def test_compose_files_exist_and_name_the_project(name):
    stack = STACKS[name]
    for f in list(stack.compose_files) + [f for v in stack.variants.values() for f in v.files]:
        assert (COMPOSE / f).is_file(), f"{name}: compose/{f} is missing"
    main = yaml.safe_load((COMPOSE / stack.compose_files[0]).read_text())
    assert main.get("name") == stack.project, f"{name}: compose/{stack.compose_files[0]} names project {main.get('name')}"


@pytest.mark.parametrize("name", ALL)
def test_every_secret_the_compose_files_mount_is_in_the_stacks_table(name):
    stack = STACKS[name]
    declared: dict[str, str] = {}
    for doc in docs(stack).values():
        for secret, spec in (doc.get("secrets") or {}).items():
            declared[secret] = spec.get("file", "")
    mounted = {s if isinstance(s, str) else s["source"] for svc in services(stack).values()
               for s in svc.get("secrets") or []}
    assert mounted <= set(declared), f"{name}: services mount undeclared secrets {mounted - set(declared)}"
    assert set(declared) == set(stack.secret_files), (
        f"{name}: declared in compose but not written: {set(declared) - set(stack.secret_files)}; "
        f"written but not declared: {set(stack.secret_files) - set(declared)}")
    for secret, path in declared.items():
        # where `up` writes them (Target.secrets_path, passed to Compose as FXSTACK_SECRETS_DIR)
        assert path == f"${{FXSTACK_SECRETS_DIR:-./secrets}}/{secret}", (name, secret, path)
        if name != "fx":
            assert secret.startswith(f"{name}_"), f"{name}: secret file {secret} shares the FX stack's directory"


@pytest.mark.parametrize("name", ALL)
def test_generated_values_give_every_secret_file(name):
    stack = STACKS[name]
    values = stack.generate()
    assert set(stack.secret_keys) <= set(values)
    files = secret_files(stack.secret_files, values)
    assert set(files) == set(stack.secret_files) and all(files.values())
    assert all(line.startswith("#") for line in stack.env_header.splitlines()), "the header is comments"


@pytest.mark.parametrize("name", ALL)
def test_every_required_setting_is_generated_or_an_image(name):
    """${VAR:?...} in a compose file: `up` must provide it (env file) or the builder (images.env)."""
    stack = STACKS[name]
    generated = set(stack.generate())
    for f in docs(stack):
        for var in re.findall(r"\$\{([A-Z0-9_]+):\?", (COMPOSE / f).read_text()):
            assert var.endswith("_IMAGE") or var in generated, f"{name}: compose/{f} requires {var}, nothing writes it"


@pytest.mark.parametrize("name", ALL)
def test_urls_and_probes_name_published_services(name):
    stack = STACKS[name]
    svcs = services(stack)
    for svc in list(stack.urls) + list(stack.probes):
        assert svc in svcs, f"{name}: {svc} is not a service of its compose files"
        assert svcs[svc].get("ports"), f"{name}: {svc} publishes no port, so it has no URL"
    for url in stack.urls.values():
        assert url.path.startswith("/") and url.what and url.login


@pytest.mark.parametrize("name", ALL)
def test_data_volumes_exist_and_their_secrets_are_generated(name):
    stack = STACKS[name]
    volumes = {v for doc in docs(stack).values() for v in (doc.get("volumes") or {})}
    generated = set(stack.generate())
    for data in stack.data:
        assert data.volume in volumes, f"{name}: data volume {data.volume} is not in its compose files"
        assert set(data.bound + data.healed) <= generated, (name, data.volume)
        assert not set(data.bound) & set(data.healed), (name, data.volume)


@pytest.mark.parametrize("name", ALL)
def test_end_to_end_run_and_benchmark_exist(name):
    stack = STACKS[name]
    assert callable(stack.e2e), f"{name}: no end-to-end runner"
    script = re.search(r"\((bench/[\w.]+)\)", stack.bench)
    assert script and (REPO / script[1]).is_file(), f"{name}: benchmark {stack.bench!r} names no script"
    fx_script = (REPO / "fx").read_text()
    command = stack.bench.split()[1]
    assert f"{command})" in fx_script, f"{name}: ./fx has no `{command}`"
