"""Every registered stack is complete: what its value names exists in its Compose files and in
the repository, and what its Compose files need, its value provides. A new stack (one module in
src/fxstack/stacks/ and its entry in the registry) is held to the same checks by being
registered; docs/adding-a-stack.md's example is held to them too, from the guide's own text."""

from __future__ import annotations

import re
import textwrap
import types
from pathlib import Path

import pytest
import yaml

from fxstack.envfile import secret_files
from fxstack.load.loader import env_var_for
from fxstack.specs import load_specs
from fxstack.stack.commands import STACK_NAMES
from fxstack.stacks.model import StackDef
from fxstack.stacks.registry import STACKS

pytestmark = pytest.mark.unit
REPO = Path(__file__).resolve().parents[2]
ALL = sorted(STACKS)


def mount_targets(svc: dict) -> set[str]:
    """Where a Compose service mounts something: volumes (short or long form) and tmpfs."""
    targets = set()
    for v in svc.get("volumes") or []:
        targets.add(v.get("target") if isinstance(v, dict) else v.split(":")[1] if ":" in v else v)
    tmpfs = svc.get("tmpfs") or []
    for t in [tmpfs] if isinstance(tmpfs, str) else tmpfs:
        targets.add(t.split(":")[0])
    return targets


def problems(stack: StackDef, repo: Path = REPO) -> list[str]:
    """What is missing or inconsistent in `stack` as the checkout at `repo` holds it."""
    compose = repo / "compose"
    found: list[str] = []
    specs = {env_var_for(name): spec for name, spec in load_specs(REPO).items()}
    names = list(stack.compose_files) + [f for v in stack.variants.values() for f in v.files]
    missing = [n for n in names if not (compose / n).is_file()]
    if missing:
        return [f"compose/{n} is missing" for n in missing]
    docs = {n: yaml.safe_load((compose / n).read_text()) or {} for n in names}
    services: dict[str, dict] = {}
    for doc in docs.values():
        for name, svc in (doc.get("services") or {}).items():
            services.setdefault(name, {}).update(svc or {})
    main = docs[stack.compose_files[0]]
    if main.get("name") != stack.project:
        found.append(f"compose/{stack.compose_files[0]} names project {main.get('name')}, not {stack.project}")

    # secrets: mounted ones declared, declared ones written, all in the shared directory
    declared = {s: (spec or {}).get("file", "") for doc in docs.values() for s, spec in (doc.get("secrets") or {}).items()}
    mounted = {s if isinstance(s, str) else s["source"] for svc in services.values() for s in svc.get("secrets") or []}
    if mounted - set(declared):
        found.append(f"services mount undeclared secrets {sorted(mounted - set(declared))}")
    if set(declared) != set(stack.secret_files):
        found.append(f"secrets declared but not in the table: {sorted(set(declared) - set(stack.secret_files))}; "
                     f"in the table but not declared: {sorted(set(stack.secret_files) - set(declared))}")
    for secret, path in declared.items():
        if path != f"${{FXSTACK_SECRETS_DIR:-./secrets}}/{secret}":
            found.append(f"secret {secret} is not in the secrets directory: {path}")
        if stack.name != "fx" and not secret.startswith(f"{stack.name}_"):
            found.append(f"secret file {secret} lacks the prefix {stack.name}_ (the directory is shared)")

    # generated values: every key, every secret file, every required variable
    values = stack.generate()
    if not set(stack.secret_keys) <= set(values):
        found.append("generate() misses secret keys")
    try:
        files = secret_files(stack.secret_files, values)
        if not all(files.values()):
            found.append("a secret file is empty")
    except Exception as exc:  # the table names a key nothing generates
        found.append(f"secret files: {exc}")
    if not all(line.startswith("#") for line in stack.env_header.splitlines()):
        found.append("the env file header is not all comments")
    for n in names:
        for var in re.findall(r"\$\{([A-Z0-9_]+):\?", (compose / n).read_text()):
            if not var.endswith("_IMAGE") and var not in values:
                found.append(f"compose/{n} requires {var}, nothing writes it")

    # URLs and probes: published services; data volumes: declared, secrets generated
    for svc in list(stack.urls) + list(stack.probes):
        if not (services.get(svc) or {}).get("ports"):
            found.append(f"{svc} is not a published service of its compose files")
    for url in stack.urls.values():
        if not (url.path.startswith("/") and url.what and url.login):
            found.append(f"URL {url} is incomplete")
    volumes = {v for doc in docs.values() for v in (doc.get("volumes") or {})}
    for data in stack.data:
        if data.volume not in volumes:
            found.append(f"data volume {data.volume} is not in its compose files")
        if not set(data.bound + data.healed) <= set(values):
            found.append(f"data volume {data.volume} depends on secrets nothing generates")
        if set(data.bound) & set(data.healed):
            found.append(f"data volume {data.volume}: a secret both bound and healed")

    # an image's VOLUME gets a mount in every service that runs the image: without one, Docker
    # makes an anonymous volume that no later `up` finds again, so every `down` leaves one behind
    # (bsopt's db-init did)
    for name, svc in services.items():
        var = re.fullmatch(r"\$\{(\w+_IMAGE)[:?}].*", str(svc.get("image", "")))
        spec = specs.get(var[1]) if var else None
        for path in spec.volumes if spec else ():
            if path not in mount_targets(svc):
                found.append(f"service {name} runs {spec.name}, whose VOLUME {path} it mounts nothing at "
                             "(an anonymous volume at every start): a named volume or a tmpfs there")

    # the end-to-end run and the benchmark
    if not callable(stack.e2e):
        found.append("no end-to-end runner")
    script = re.search(r"\((bench/[\w.]+)\)", stack.bench)
    if not script or not (repo / script[1]).is_file():
        found.append(f"benchmark {stack.bench!r} names no script")
    elif f"{stack.bench.split()[1]})" not in (repo / "fx").read_text():
        found.append(f"./fx has no `{stack.bench.split()[1]}`")
    return found


def test_the_cli_offers_every_registered_stack():
    assert tuple(STACKS) == STACK_NAMES


@pytest.mark.parametrize("name", ALL)
def test_every_registered_stack_is_complete(name):
    assert problems(STACKS[name]) == []


def guide_stack(tmp_path: Path) -> tuple[StackDef, Path]:
    """The guide's example module, run as written (its end-to-end module stubbed), in a copy of
    the files it needs: the guide's Compose rules applied to a small Compose file, the guide's
    benchmark script and ./fx entry."""
    guide = (REPO / "docs" / "adding-a-stack.md").read_text()
    code = re.search(r"```python\n(.*?)```", guide, re.S)[1]
    code = code.replace("from . import mystack_e2e", "").replace("from .model import", "from fxstack.stacks.model import")
    scope = {"mystack_e2e": types.SimpleNamespace(run=lambda target, *, out, timeout: {})}
    exec(compile(code, "docs/adding-a-stack.md", "exec"), scope)
    stack = next(v for v in scope.values() if isinstance(v, StackDef))
    repo = tmp_path / "repo"
    (repo / "compose").mkdir(parents=True)
    (repo / "bench").mkdir()
    (repo / "bench" / "mystack_bench.py").write_text("")
    (repo / "fx").write_text("  bench-mystack) shift; exec python bench/mystack_bench.py ;;\n")
    (repo / "compose" / "mystack.yml").write_text(textwrap.dedent("""\
        name: mystack
        services:
          postgres:
            image: ${POSTGRES_IMAGE:?run `fxstack build`}
            secrets: [mystack_db_password]
            volumes: [pgdata:/var/lib/postgresql/data]
          api:
            image: ${MY_API_IMAGE:?run `fxstack build`}
            ports: ["127.0.0.1:${MYSTACK_API_PORT:-8400}:8000"]
            secrets: [mystack_db_password]
        volumes:
          pgdata:
        secrets:
          mystack_db_password:
            file: ${FXSTACK_SECRETS_DIR:-./secrets}/mystack_db_password
        """))
    return stack, repo


def test_the_guides_example_stack_is_complete(tmp_path):
    stack, repo = guide_stack(tmp_path)
    assert problems(stack, repo) == []


def test_the_check_finds_what_a_new_stack_misses(tmp_path):
    """The walk can fail: a secret mounted but not in the table, a URL of an unpublished service,
    a data volume not declared, a file without the stack's prefix."""
    from dataclasses import replace

    from fxstack.stacks.model import DataVolume, Url, frozen_map

    stack, repo = guide_stack(tmp_path)
    broken = replace(stack, secret_files=frozen_map({}),
                     urls=frozen_map({"postgres": Url("db", "/", "none")}),
                     data=(DataVolume("nowhere", "x"),))
    found = "\n".join(problems(broken, repo))
    for part in ("declared but not in the table: ['mystack_db_password']", "postgres is not a published service",
                 "data volume nowhere"):
        assert part in found, (part, found)
    text = (repo / "compose" / "mystack.yml").read_text().replace("mystack_db_password", "db_password")
    (repo / "compose" / "mystack.yml").write_text(text)
    assert any("lacks the prefix mystack_" in p for p in problems(stack, repo))
    (repo / "compose" / "mystack.yml").write_text(text.replace("volumes: [pgdata:/var/lib/postgresql/data]", ""))
    assert any("service postgres runs postgres, whose VOLUME /var/lib/postgresql/data" in p
               for p in problems(stack, repo)), problems(stack, repo)
