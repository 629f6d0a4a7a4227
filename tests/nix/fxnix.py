"""Helpers for the Nix checks: run nix-instantiate, evaluate the flake against the stand-ins,
navigate what the stand-ins recorded, and make edited copies of the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NIX_INSTANTIATE = shutil.which("nix-instantiate")
NIX = shutil.which("nix")

SKIP_REASON = ("nix-instantiate not found: install Nix (Debian: apt-get install nix-bin) "
               "to run the Nix checks; CI installs it")
needs_nix = pytest.mark.skipif(NIX_INSTANTIATE is None, reason=SKIP_REASON)

# What the repository copy needs for the flake to evaluate.
COPY_PATHS = ("flake.nix", "flake.lock", "nix", "images", "src", "pyproject.toml", "poetry.lock")


class NixError(Exception):
    pass


def nix_env() -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("NIX_STATE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "fxstack-nix-state"))
    # No user or system config may change how the expressions evaluate.
    env["NIX_CONFIG"] = "experimental-features = nix-command flakes"
    return env


def instantiate(*args: str, cwd: Path = ROOT, timeout: int = 60) -> str:
    cmd = [NIX_INSTANTIATE, "--readonly-mode", *args]
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=nix_env())
    if proc.returncode != 0:
        raise NixError(proc.stderr.strip())
    return proc.stdout


def eval_json(expr_file: Path | str, *, args: dict[str, str] | None = None, expr: str | None = None,
              cwd: Path = ROOT) -> Any:
    cli = ["--eval", "--strict", "--json"]
    for name, value in (args or {}).items():
        cli += ["--arg", name, value]
    if expr is not None:
        cli += ["-E", expr]
    else:
        cli.append(str(expr_file))
    return json.loads(instantiate(*cli, cwd=cwd))


def evaluate_flake(root: Path) -> "Flake":
    """flake.nix's outputs against the stand-ins (tests/nix/eval.nix)."""
    data = eval_json(HERE / "eval.nix", args={"root": str(root), "standins": str(HERE / "standins")})
    return Flake(data)


def nix_specs(root: Path) -> dict[str, Any]:
    return eval_json(None, expr=f"(import {ROOT / 'nix' / 'specs.nix'} {{ root = {root}; }}).specs")


def python_specs(root: Path) -> dict[str, Any]:
    import sys
    sys.path.insert(0, str(ROOT / "src"))
    from fxstack.specs import load_specs, specs_json  # noqa: E402
    return specs_json(load_specs(root))


def copy_repo(dest: Path, source: Path = ROOT) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPY_PATHS:
        src = source / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        elif src.exists():
            shutil.copy2(src, dest / name)
    return dest


def read_spec(root: Path, name: str) -> dict[str, Any]:
    return tomllib.loads((root / "images" / f"{name}.toml").read_text())


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(v)


def write_spec(root: Path, raw: dict[str, Any], *, filename: str | None = None) -> None:
    """Write a spec back as TOML (top-level keys, then the [env] / [labels] / [packages] tables)."""
    tables = ("env", "labels", "packages")
    lines = [f"{k} = {_toml_value(v)}" for k, v in raw.items() if k not in tables]
    for table in tables:
        if table in raw:
            lines.append(f"\n[{table}]")
            lines += [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in raw[table].items()]
    (root / "images" / (filename or f"{raw['name']}.toml")).write_text("\n".join(lines) + "\n")


class Flake:
    """What the stand-ins recorded for one evaluation of the flake's outputs."""

    def __init__(self, data: dict[str, Any]):
        self.data = data
        self.drvs: dict[str, dict[str, Any]] = data["drvs"]

    # -- navigation --------------------------------------------------------------------
    def drv(self, ref: Any) -> dict[str, Any]:
        path = ref["$drv"] if isinstance(ref, dict) else ref
        return self.drvs[path]

    def image(self, name: str) -> dict[str, Any]:
        return self.drv(self.data["images"][name]["drv"])

    def image_args(self, name: str) -> dict[str, Any]:
        return self.image(name)["args"]

    def layer_paths(self, name: str) -> list[str]:
        return [ref["$drv"] for ref in self.image_args(name)["layers"]]

    def layers(self, name: str) -> list[dict[str, Any]]:
        return [self.drv(p) for p in self.layer_paths(name)]

    def copy_to_root(self, layer: dict[str, Any]) -> list[dict[str, Any]]:
        return [self.drv(r) for r in (layer["args"].get("copyToRoot") or [])]

    def env_of_layer(self, layer: dict[str, Any]) -> dict[str, Any]:
        """The poetry2nix environment an env layer links into /bin."""
        (bin_env,) = self.copy_to_root(layer)
        env = self.drv(bin_env["args"]["env"]["pythonEnv"])
        assert env["fn"] == "poetry2nix.mkPoetryPackages", env["fn"]
        return env

    def reachable(self, start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            path = todo.pop()
            if path in seen:
                continue
            seen.add(path)
            todo += list(_refs(self.drvs[path]["args"]))
        return seen

    def config(self, name: str) -> dict[str, Any]:
        return self.image_args(name)["config"]

    def env(self, name: str) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.config(name)["Env"])


def _refs(value: Any):
    if isinstance(value, dict):
        if "$drv" in value:
            yield value["$drv"]
        else:
            for v in value.values():
                yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)
