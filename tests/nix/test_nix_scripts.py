"""The shell the flake generates, run here: the build scripts of the rootfs, env-bin, app and dirs
derivations (against fake packages standing in for /nix/store), the stack scripts through
`bash -n` and shellcheck (what writeShellApplication's checkPhase runs at build time), and the
image loader with the copy commands replaced."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

import fxnix

pytestmark = [pytest.mark.unit, fxnix.needs_nix]

SPEC_NAMES = sorted(p.stem for p in (fxnix.ROOT / "images").glob("*.toml"))
SHELLCHECK = shutil.which("shellcheck")


def run(script: str, env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """Like a runCommand build: bash with errexit, nounset and pipefail."""
    return subprocess.run(["bash", "-euo", "pipefail", "-c", script, "script", *args], cwd=cwd,
                          env={"PATH": os.environ["PATH"], **env}, capture_output=True, text=True, timeout=60)


def fake_package(store: Path, drv: dict, files: dict[str, str]) -> Path:
    root = store / drv["name"]
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for path in sorted(root.rglob("*"), reverse=True):   # read-only, like the store
        path.chmod(0o555 if path.is_dir() else 0o444)
    return root


@pytest.mark.parametrize("name", SPEC_NAMES)
def test_rootfs_script_builds_the_tree(flake, specs, name, tmp_path):
    spec = specs[name]
    system = flake.layers(name)[0]
    (rootfs,) = flake.copy_to_root(system)
    pkgs = [flake.drv(r) for r in rootfs["args"]["env"]["packages"]]
    store = tmp_path / "store"
    dirs = [fake_package(store, d, {f"bin/{d['name']}": "#!/bin/sh\n", f"share/{d['name']}/README": "x\n"}) for d in pkgs]
    out = tmp_path / "out"
    proc = run(rootfs["args"]["script"], {"out": str(out), "packages": " ".join(map(str, dirs))}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    for d in pkgs:
        assert (out / "bin" / d["name"]).is_symlink()
        assert (out / "share" / d["name"]).is_dir() and not (out / "share" / d["name"]).is_symlink()
    assert os.readlink(out / "usr" / "bin") == "../bin"
    passwd = (out / "etc" / "passwd").read_text().splitlines()
    assert any(line.startswith(f"{spec['user']}:x:") for line in passwd)
    assert (out / "tmp").is_dir()
    # every path the layer's perms name exists in the tree
    for perm in system["args"]["perms"]:
        rel = perm["regex"].removeprefix("^" + rootfs_out(flake, system)).removesuffix("(/.*)?$").removesuffix("$")
        assert (out / rel.lstrip("/")).is_dir(), rel
    if spec["kind"] == "python":
        assert (out / "app").is_dir() and (out / "data").is_dir()


def rootfs_out(flake, layer):
    return layer["args"]["copyToRoot"][0]["$drv"]


def test_rootfs_collision_is_an_error(flake, tmp_path):
    system = flake.layers("postgres")[0]
    (rootfs,) = flake.copy_to_root(system)
    store = tmp_path / "store"
    a = fake_package(store, {"name": "a"}, {"bin/same": "a"})
    b = fake_package(store, {"name": "b"}, {"bin/same": "b"})
    proc = run(rootfs["args"]["script"], {"out": str(tmp_path / "out"), "packages": f"{a} {b}"}, tmp_path)
    assert proc.returncode != 0 and "same" in proc.stderr


def test_env_bin_script_links_every_program(flake, tmp_path):
    layer = flake.layers("fx-fastapi")[2]
    (envbin,) = flake.copy_to_root(layer)
    env = fake_package(tmp_path / "store", {"name": "env"}, {"bin/python3": "", "bin/gunicorn": "", "bin/uvicorn": ""})
    out = tmp_path / "out"
    proc = run(envbin["args"]["script"], {"out": str(out), "pythonEnv": str(env)}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (out / "bin").iterdir()) == ["gunicorn", "python3", "uvicorn"]
    assert os.readlink(out / "bin" / "gunicorn") == str(env / "bin" / "gunicorn")


WITH_APP = [n for n in SPEC_NAMES if fxnix.read_spec(fxnix.ROOT, n).get("app")]


@pytest.mark.parametrize("name", WITH_APP)
def test_app_script_copies_the_app_entries(flake, specs, snapshot, name, tmp_path):
    spec = specs[name]
    (tree,) = flake.copy_to_root(flake.layers(name)[-1])
    script = tree["args"]["script"]
    copies = re.findall(r"cp -rT (/nix/store/\S+) ", script)
    assert len(copies) == len(spec["app"])
    for store_path, entry in zip(copies, spec["app"]):
        assert store_path.endswith("-fx-app-" + Path(entry["src"]).name)
        script = script.replace(store_path, str(snapshot / entry["src"]))
    out = tmp_path / "out"
    proc = run(script, {"out": str(out)}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    for entry in spec["app"]:
        src, dest = snapshot / entry["src"], out / entry["dest"].lstrip("/")
        if src.is_file():
            assert dest.read_bytes() == src.read_bytes()
        else:
            want = {p.relative_to(src) for p in src.rglob("*") if "__pycache__" not in p.parts}
            assert {p.relative_to(dest) for p in dest.rglob("*") if "__pycache__" not in p.parts} >= want


def stack_scripts(flake):
    out = {}
    for path, drv in flake.drvs.items():
        if drv["fn"] == "nixpkgs.writeShellApplication":
            out[drv["name"] + ":" + path[11:19]] = drv
    return out


def as_written(drv) -> str:
    """The file writeShellApplication writes (runtimeInputs' PATH export left out)."""
    opts = drv["args"].get("bashOptions", ["errexit", "nounset", "pipefail"])
    return "#!/usr/bin/env bash\n" + "".join(f"set -o {o}\n" for o in opts) + "\n" + drv["args"]["text"]


def test_stack_scripts_parse(flake, tmp_path):
    scripts = stack_scripts(flake)
    assert len(scripts) >= 5
    for name, drv in scripts.items():
        path = tmp_path / name.replace(":", "-")
        path.write_text(as_written(drv))
        proc = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
        assert proc.returncode == 0, (name, proc.stderr)


@pytest.mark.skipif(SHELLCHECK is None, reason="shellcheck not installed (Debian: apt-get install shellcheck)")
def test_stack_scripts_pass_shellcheck(flake, tmp_path):
    """writeShellApplication runs shellcheck when it builds: the scripts must pass it."""
    for name, drv in stack_scripts(flake).items():
        path = tmp_path / name.replace(":", "-")
        path.write_text(as_written(drv))
        excluded = drv["args"].get("excludeShellChecks", [])
        cmd = [SHELLCHECK, *(["--exclude", ",".join(excluded)] if excluded else []), str(path)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        assert proc.returncode == 0, (name, proc.stdout)


def test_loader_writes_images_env(flake, specs, tmp_path):
    drv = next(d for d in flake.drvs.values() if d["name"] == "fx-load-images"
               and "fx-fingpt" not in d["args"]["text"])
    log = tmp_path / "copied"
    text = re.sub(r"/nix/store/\S+/bin/copy-to-docker-daemon", f"echo copied >> {log}", drv["args"]["text"])
    state = tmp_path / "state"
    state.mkdir()
    (state / "images.env").write_text("# old\nOTHER_IMAGE=other:1\nFX_FASTAPI_IMAGE=fx-fastapi:old\n")
    proc = run(text, {"FXSTACK_STATE": str(state), "FXSTACK_ROOT": str(tmp_path)}, tmp_path)
    assert proc.returncode == 0, proc.stderr
    loaded = [n for n, s in specs.items() if s["deploy"] and not s["gpu"]]
    assert len(log.read_text().splitlines()) == len(loaded)
    lines = (state / "images.env").read_text().splitlines()
    refs = dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))
    assert refs.pop("OTHER_IMAGE") == "other:1"                       # other lines kept
    assert refs == {n.upper().replace("-", "_") + "_IMAGE": f"{n}:{flake.data['images'][n]['imageTag']}" for n in loaded}
    assert not (state / "images.env.tmp").exists()


def test_loader_writes_nothing_when_a_copy_fails(flake, tmp_path):
    drv = next(d for d in flake.drvs.values() if d["name"] == "fx-load-images")
    text = re.sub(r"/nix/store/\S+/bin/copy-to-docker-daemon", "false", drv["args"]["text"], count=1)
    text = re.sub(r"/nix/store/\S+/bin/copy-to-docker-daemon", "true", text)
    state = tmp_path / "state"
    proc = run(text, {"FXSTACK_STATE": str(state), "FXSTACK_ROOT": str(tmp_path)}, tmp_path)
    assert proc.returncode != 0
    assert not (state / "images.env").exists()


def test_stack_app_runs_the_harness_cli(flake, snapshot, tmp_path):
    """stack-test with the store paths swapped for this checkout: the harness starts and parses its arguments."""
    program = flake.data["apps"]["stack-test"]["program"]
    drv = flake.drvs[program.rsplit("/bin/", 1)[0]]
    text = drv["args"]["text"]
    harness_src = re.search(r"FXSTACK_ROOT=(/nix/store/\S+-fxstack-harness-src)", text).group(1)
    text = text.replace(harness_src, str(snapshot))
    text = re.sub(r"/nix/store/\S+-env/bin/python", str(Path(os.sys.executable)), text)
    proc = run(text, {"HOME": str(tmp_path), "FXSTACK_STATE": str(tmp_path / "state")}, tmp_path, "--help")
    assert proc.returncode == 0, proc.stderr
    assert "usage: fxstack test" in proc.stdout
