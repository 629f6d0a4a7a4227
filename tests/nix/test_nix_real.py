"""The `nixreal` tier: flake.nix evaluated with the REAL nix2container and poetry2nix at the
revisions flake.lock pins (resolved from the store, no network), and nixpkgs replaced by
tests/nix/standins/nixpkgs-real (the real nixpkgs lib, a package set whose derivations really
instantiate). Needs the locked inputs in the store: `./fx nix-seed DIR...`; without them every
test here is skipped with the reason, and the summary line says `nixreal: did not run`.

What this proves: every output instantiates (every image, app, check, the devShell) with the
real internals of both libraries, poetry2nix's real wheel selection ran for every locked
package each environment needs, and no dependency cycle is left. What it does not: that
anything builds or starts (nothing of nixpkgs exists here), or that the pinned nixpkgs has
every attribute named (the stand-in has what the flake and these libraries ask for).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

import fxnix
import realinputs

pytestmark = pytest.mark.nixreal

REASON = realinputs.why_not()
if REASON is not None:
    pytest.skip(f"nixreal did not run: {REASON}", allow_module_level=True)

# The flake's Python: CPython 3.11 on x86_64-linux with the pinned nixpkgs' glibc (2.40).
GLIBC = (2, 40)


@pytest.fixture(scope="session")
def real_repo(tmp_path_factory) -> Path:
    dest = fxnix.copy_repo(tmp_path_factory.mktemp("nixreal") / "repo")
    # The unit-tests check copies the tests too (finding 6 runs its script).
    shutil.copytree(fxnix.ROOT / "tests", dest / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache"))
    return dest


@pytest.fixture(scope="session")
def standin(tmp_path_factory) -> Path:
    return realinputs.standin_tree(tmp_path_factory.mktemp("nixreal") / "nixpkgs")


@pytest.fixture(scope="session")
def real(real_repo, standin) -> realinputs.RealFlake:
    return realinputs.RealFlake(real_repo, standin)


@pytest.fixture(scope="session")
def instantiated(real, request):
    outputs = real.outputs()
    errors, closure = real.instantiate(outputs)
    request.config.stash[realinputs.OUTPUTS_KEY] = (len(outputs) - len(errors), len(outputs))
    return outputs, errors, closure


def test_every_output_instantiates(instantiated):
    outputs, errors, _ = instantiated
    kinds = {k.split(".")[0] for k in outputs}
    assert {"packages", "apps", "checks", "devShells", "formatter", "legacyPackages"} <= kinds
    assert sum(k.startswith("packages.") for k in outputs) >= 12
    assert not errors, "outputs that do not instantiate with the real code:\n" + "\n".join(
        f"  {k}: {v}" for k, v in sorted(errors.items()))


# --- what poetry2nix chose, read back from the instantiated derivations ---------------------------

def _by_out(closure: dict) -> dict[str, tuple[str, dict]]:
    by = {}
    for drv, d in closure.items():
        for o in d["outputs"].values():
            by[o["path"]] = (drv, d)
    return by


def _python_packages(closure: dict) -> dict[str, dict]:
    """drv -> derivation for every poetry2nix-built package (buildPythonPackage names them
    python3.11-<pname>-<version>)."""
    return {k: d for k, d in closure.items()
            if d["env"].get("name", "").startswith("python3.11-") and "pname" in d["env"]}


def _envs(closure: dict) -> dict[str, dict]:
    return {k: d for k, d in closure.items() if d["env"].get("name", "").endswith("-env")
            and d["env"].get("name", "").startswith("python3")}


def _env_packages(closure: dict, env: dict) -> set[str]:
    by = _by_out(closure)
    return {by[p][1]["env"]["pname"] for p in env["env"].get("paths", "").split()
            if p in by and "pname" in by[p][1]["env"]}


def _compatible_tags():
    from packaging import tags
    plats = ["linux_x86_64", "manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"]
    plats += [f"manylinux_2_{m}_x86_64" for m in range(GLIBC[1], 4, -1)]
    return set(tags.cpython_tags((3, 11), platforms=plats)) | set(tags.compatible_tags((3, 11), "cp311", plats))


def test_wheel_selection_ran_for_every_locked_package(instantiated, request):
    """Every package of every environment got its file from poetry2nix's real selection
    (mk-poetry-dep.nix -> pyproject.nix pypa.selectWheels), and that file agrees with pip's
    own rules (packaging.tags for CPython 3.11, glibc 2.40, x86_64): a wheel only when one is
    compatible, never an incompatible one."""
    from packaging.utils import canonicalize_name, parse_wheel_filename
    _, errors, closure = instantiated
    assert not errors
    lock = tomllib.loads((fxnix.ROOT / "poetry.lock").read_text())
    files = {canonicalize_name(p["name"]): [f["file"] for f in p.get("files", [])] for p in lock["package"]}
    ok_tags = _compatible_tags()
    by = _by_out(closure)
    pkgs = _python_packages(closure)
    assert len(pkgs) > 100
    problems = []
    chosen = {}
    for drv, d in pkgs.items():
        pname = d["env"]["pname"]
        if d["env"].get("version", "").endswith("-nixpkgs"):
            continue  # nixpkgs' own build tools (setuptools...), not from poetry.lock
        src = by.get(d["env"].get("src", ""))
        if src is None:
            problems.append(f"{pname}: no src")
            continue
        file = src[1]["env"]["name"]
        chosen[pname] = file
        wheels = [f for f in files.get(pname, []) if f.endswith(".whl")]
        good = [w for w in wheels if set(parse_wheel_filename(w)[3]) & ok_tags]
        if file.endswith(".whl"):
            if file not in good:
                problems.append(f"{pname}: chose {file}, not installable on CPython 3.11 x86_64 glibc 2.40")
        elif good:
            problems.append(f"{pname}: chose the sdist {file} although {good[0]} is compatible (preferWheels)")
    request.config.stash[realinputs.WHEELS_KEY] = (len(chosen), len(problems))
    assert not problems, "\n".join(problems)


def test_no_dependency_cycle_and_airflow_is_whole(instantiated):
    """Finding 3 on the real lock: the Airflow environments instantiate (no infinite
    recursion), and each still has apache-airflow and all nine providers."""
    _, errors, closure = instantiated
    assert not any("infinite recursion" in e for e in errors.values()), errors
    from packaging.utils import canonicalize_name
    lock = tomllib.loads((fxnix.ROOT / "poetry.lock").read_text())
    airflow = next(p for p in lock["package"] if p["name"] == "apache-airflow")
    bundled = {canonicalize_name(n) for n in airflow["dependencies"] if "providers" in n}
    assert len(bundled) == 9, bundled
    airflow_envs = [e for e in _envs(closure).values() if "apache-airflow" in _env_packages(closure, e)]
    assert airflow_envs
    for env in airflow_envs:
        missing = bundled - _env_packages(closure, env)
        assert not missing, (env["env"]["name"], sorted(missing))


def test_no_environment_has_both_mlflow_and_mlflow_skinny(instantiated):
    """Finding 4 on the real lock: mlflow and mlflow-skinny install the same files and the
    same bin/mlflow; python.withPackages does not ignore collisions."""
    _, errors, closure = instantiated
    assert not errors
    envs = _envs(closure)
    with_mlflow = [e for e in envs.values() if "mlflow" in _env_packages(closure, e)]
    assert with_mlflow
    for env in envs.values():
        names = _env_packages(closure, env)
        assert not ({"mlflow", "mlflow-skinny"} <= names and env["env"].get("ignoreCollisions") != "1"), \
            env["env"]["name"]
    # what mlflow-skinny brought must still be there (its own dependencies)
    lock = tomllib.loads((fxnix.ROOT / "poetry.lock").read_text())
    skinny = next(p for p in lock["package"] if p["name"] == "mlflow-skinny")
    excluded = {"databricks-sdk"}  # [tool.fxstack.exclude]
    from packaging.utils import canonicalize_name
    needed = {canonicalize_name(n) for n in skinny["dependencies"]} - excluded
    for env in with_mlflow:
        assert needed <= _env_packages(closure, env), needed - _env_packages(closure, env)


def test_volatile_builds_with_setuptools(instantiated):
    """Finding 5 on the real lock: volatile (an sdist with a bare setup.py) has setuptools
    among its build inputs."""
    _, errors, closure = instantiated
    assert not errors
    by = _by_out(closure)
    vol = [d for d in _python_packages(closure).values() if d["env"]["pname"] == "volatile"]
    assert vol, "no environment has volatile (feast -> bowler -> volatile)"
    for d in vol:
        native = {by[p][1]["env"].get("pname") for p in d["env"].get("nativeBuildInputs", "").split() if p in by}
        assert "setuptools" in native, sorted(n for n in native if n)


def test_cuda_runtime_path_is_the_lib_output(instantiated):
    """Risk: cudaPackages_12_4.cuda_cudart keeps its libraries in its `lib` output; the
    image's LD_LIBRARY_PATH and layer must name that one."""
    _, errors, closure = instantiated
    assert not errors
    configs = [json.loads(d["env"]["text"]) for d in closure.values()
               if d["env"].get("name") == "config.json" and "LD_LIBRARY_PATH" in d["env"].get("text", "")]
    assert configs, "no image config with LD_LIBRARY_PATH (fx-fingpt)"
    cudart = [d for d in closure.values() if d["env"].get("pname") == "cuda_cudart"]
    assert cudart
    lib_out = cudart[0]["outputs"]["lib"]["path"]
    for c in configs:
        ld = dict(e.split("=", 1) for e in c["Env"])["LD_LIBRARY_PATH"].split(":")
        assert f"{lib_out}/lib" in ld, ld


def test_unit_tests_check_runs_without_git(instantiated, real_repo, tmp_path):
    """Finding 6: the unit-tests check's own build script (read from its instantiated
    derivation), run where the sandbox would run it: no git on PATH, a source without .git.
    Restricted to tests/services/test_postgres_entrypoint.py, the file that called git."""
    _, errors, closure = instantiated
    assert not errors
    (check,) = [d for d in closure.values() if d["env"].get("name") == "fxstack-unit-tests"]
    script = check["env"]["buildCommand"]
    line = next(l for l in script.splitlines() if " -m pytest " in l)
    args = shlex.split(line.split(" -m pytest ", 1)[1])
    target = "tests/services/test_postgres_entrypoint.py"
    args = [target if a == "tests" else a for a in args]
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "python").symlink_to(sys.executable)
    path = [str(bindir)] + [d for d in os.environ["PATH"].split(":")
                            if d and not (Path(d) / "git").exists()]
    work = tmp_path / "repo"
    shutil.copytree(real_repo, work, ignore=shutil.ignore_patterns(".git"))
    env = {"PATH": ":".join(path), "PYTHONPATH": str(work / "src"), "HOME": str(tmp_path),
           "TMPDIR": str(tmp_path)}
    assert shutil.which("git", path=env["PATH"]) is None
    proc = subprocess.run([str(bindir / "python"), "-m", "pytest", *args], cwd=work, env=env,
                          capture_output=True, text=True, timeout=300)
    # 5: everything it selected was deselected on purpose (the check lists why)
    assert proc.returncode in (0, 5), proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "failed" not in proc.stdout.lower()
    assert "test_script_is_bash_and_executable_in_git" in script, \
        "the check must say which test it leaves out and why"


def test_image_tags_are_stable(real):
    """The manifest the stack apps read (every image's ref) comes from the real
    nix2container: imageTag is the hash part of the image's own store path."""
    manifest = real.eval_json(f"legacyPackages.{realinputs.SYSTEM}.image-manifest",
                              "m: m.text or null")
    if manifest is None:
        pytest.skip("image-manifest has no text attribute here")
    data = json.loads(manifest)
    for name, m in data.items():
        assert re.fullmatch(rf"{re.escape(name)}:[0-9a-z]{{32}}", m["ref"]), m["ref"]

