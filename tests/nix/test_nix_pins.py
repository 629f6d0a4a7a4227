"""nix/pins.nix and nix/lock-pins.json: the Nix path installs what the portable builder
installs, and refuses a lock the portable builder refuses, with the same message."""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

import fxnix

pytestmark = [pytest.mark.unit, fxnix.needs_nix]

sys.path.insert(0, str(fxnix.ROOT / "src"))
from fxstack.errors import FxError  # noqa: E402
from fxstack.lock import nixpins  # noqa: E402
from fxstack.lock.poetry_lock import PoetryLock  # noqa: E402


def _pins_expr(root: Path) -> str:
    return (f"(import {root / 'nix' / 'pins.nix'} {{ src = {root}; lib = import {root / 'nix' / 'lib.nix'};"
            " installable = _: true; })")


def _nix_check(root: Path) -> str:
    """What evaluating the flake's lock check says: "ok", or the text it throws."""
    try:
        fxnix.eval_json(None, expr=f"{_pins_expr(root)}.check", cwd=root)
        return "ok"
    except fxnix.NixError as e:
        text = str(e)
        m = re.search(r"error: (.*?)\n\s*\(use '--show-trace'", text, re.S)
        if not m:
            return text
        # Nix prints a message's later lines under the first, indented by len("error: ")
        return re.sub(r"\n {7}", "\n", m.group(1).strip())


def _portable_check(root: Path) -> str:
    """The portable builder's verdict on the same files, read as it reads them (relative paths,
    from the repository root)."""
    cwd = os.getcwd()
    os.chdir(root)
    try:
        PoetryLock(Path("poetry.lock"), Path("pyproject.toml"))
        return "ok"
    except FxError as e:
        return str(e)
    finally:
        os.chdir(cwd)


def test_pins_are_current():
    """nix/lock-pins.json is what `python -m fxstack.lock.nixpins` writes from poetry.lock,
    pyproject.toml and images/ now."""
    assert (fxnix.ROOT / nixpins.PINS).read_text() == nixpins.render(fxnix.ROOT), \
        "nix/lock-pins.json is out of date: run `python -m fxstack.lock.nixpins`"


def test_pins_name_the_portable_builders_files(snapshot):
    pins = json.loads((snapshot / "nix" / "lock-pins.json").read_text())
    lock = PoetryLock(snapshot / "poetry.lock", snapshot / "pyproject.toml")
    specs = fxnix.python_specs(snapshot)
    for name, spec in specs.items():
        if spec["kind"] != "python":
            continue
        env = pins["envs"]["+".join(spec["groups"])]
        files = lock.files_for(spec["groups"])
        assert sorted(f.name for f in files) == env["packages"], name
        for f in files:
            assert pins["files"][f.name] == {"version": f.version, "file": f.filename, "sha256": f.sha256}
    # the two wheels poetry2nix ranked differently from pip
    assert pins["files"]["cryptography"]["file"].endswith("manylinux_2_34_x86_64.whl")
    assert pins["files"]["pyarrow"]["file"].endswith("manylinux_2_28_x86_64.whl")
    # jsonschema's format-nongpl extra is followed only where a dependency asks for it
    assert "fqdn" not in pins["envs"]["base+airflow"]["packages"]


def test_nix_content_hash_is_poetrys(snapshot):
    got = fxnix.eval_json(None, expr=f"{_pins_expr(snapshot)}.contentHash", cwd=snapshot)
    assert got == PoetryLock(snapshot / "poetry.lock", snapshot / "pyproject.toml").content_hash
    assert _nix_check(snapshot) == "ok"


@pytest.mark.parametrize("old,new", [
    ('pandas = "2.1.0"', 'pandas = "2.2.3"'),        # the change of issue 16
    ('[tool.poetry.group.fastapi.dependencies]', '[tool.poetry.group.fastapi.dependencies]\nhttpx2 = "*"'),
])
def test_stale_lock_is_refused_with_the_portable_message(repo_copy, old, new):
    pyproject = repo_copy / "pyproject.toml"
    text = pyproject.read_text()
    assert text.count(old) == 1, old
    pyproject.write_text(text.replace(old, new))
    portable = _portable_check(repo_copy)
    assert "poetry.lock is not consistent with pyproject.toml" in portable
    assert _nix_check(repo_copy) == portable


def test_scripts_and_name_do_not_make_a_lock_stale(repo_copy):
    """What the content-hash leaves out (name, version, scripts) changes nothing, on both paths."""
    pyproject = repo_copy / "pyproject.toml"
    text = pyproject.read_text()
    scripts = re.search(r"\[tool\.poetry\.scripts\]\n(.*\n)+?\n", text)
    assert scripts, "pyproject.toml has [tool.poetry.scripts] (the harness's venv needs it)"
    pyproject.write_text(text.replace(scripts.group(0), ""))
    assert _portable_check(repo_copy) == "ok"
    assert _nix_check(repo_copy) == "ok"


def test_pins_for_another_lock_are_refused(repo_copy):
    pins = repo_copy / "nix" / "lock-pins.json"
    data = json.loads(pins.read_text())
    data["content-hash"] = "0" * 64
    pins.write_text(json.dumps(data))
    assert _nix_check(repo_copy).startswith("nix/lock-pins.json: made for another poetry.lock")
    assert "python -m fxstack.lock.nixpins" in _nix_check(repo_copy)


def test_stale_lock_stops_every_output(flake, repo_copy):
    """Images (service images too), apps and checks all throw; the dev shell (whose Poetry
    re-locks) does not."""
    pyproject = repo_copy / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('pandas = "2.1.0"', 'pandas = "2.2.3"'))
    with pytest.raises(fxnix.NixError, match="poetry.lock is not consistent with pyproject.toml"):
        fxnix.evaluate_flake(repo_copy)


def test_no_environment_gets_the_scripts_package(flake):
    """[tool.poetry.scripts] (the harness's `fxstack`) stays in pyproject.toml, but no
    poetry2nix environment is given it: its bin/fxstack could not import in an image."""
    envs = {p: d for p, d in flake.drvs.items() if d["fn"] == "poetry2nix.mkPoetryPackages"}
    assert envs
    for env in envs.values():
        assert env["args"]["scripts"] == {}, env["args"]["groups"]
