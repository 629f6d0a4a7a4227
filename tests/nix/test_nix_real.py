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


def test_mlflow_skinny_leaves_its_files_to_mlflow(instantiated):
    """Finding 4 on the real lock: mlflow and mlflow-skinny install the same files and the
    same bin/mlflow; python.withPackages does not ignore collisions. Both are installed, as
    the portable builder installs both; where mlflow is there too, mlflow-skinny keeps only its
    metadata, and where it is alone (the harness's environments) it is whole."""
    _, errors, closure = instantiated
    assert not errors
    by = _by_out(closure)
    seen = set()
    for env in _envs(closure).values():
        drvs = [by[p][1] for p in env["env"].get("paths", "").split() if p in by]
        names = {d["env"].get("pname") for d in drvs}
        for d in drvs:
            if d["env"].get("pname") != "mlflow-skinny":
                continue
            post = d["env"].get("postInstall", "")
            reduced = "! -name '*.dist-info' -exec rm -rf {} +" in post and "rm -rf $out/bin" in post
            assert reduced == ("mlflow" in names), (env["env"]["name"], sorted(names)[:5], post)
            seen.add(reduced)
    assert seen == {True, False}, seen


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



# --- issue 16: one lock, one image ---------------------------------------------------------------

def test_images_install_the_same_files_as_the_portable_builder(instantiated, real, real_repo, request):
    """For every Python image: the (name, version, file, sha256) of every package the Nix
    image's environments hold, read from the instantiated derivations (each package's src),
    equals what the portable builder installs (PoetryLock.files_for and its wheel choice);
    nothing else is in an environment but the interpreter."""
    _, errors, closure = instantiated
    assert not errors
    drvs = realinputs.image_drvs(real)
    specs = fxnix.python_specs(real_repo)
    result = realinputs.compare_images(real_repo, closure, drvs, specs)
    assert len(result) >= 11, sorted(result)
    same = [n for n, d in result.items() if not d]
    request.config.stash[realinputs.SAME_FILES_KEY] = (len(same), len(result))
    assert len(same) == len(result), "\n".join(
        f"{n}:\n" + "\n".join(f"  {x}" for x in d) for n, d in result.items() if d)


def test_no_fxstack_script_in_any_image(instantiated, real):
    """[tool.poetry.scripts] stays in pyproject.toml (the harness's venv), but no image's
    environment has poetry2nix's scripts package (its bin/fxstack imports fxstack.cli, which
    no image has), and every environment path is the interpreter or a package built from a
    locked file: nothing else can put a script in /bin."""
    _, errors, closure = instantiated
    assert not errors
    drvs = realinputs.image_drvs(real)
    by = _by_out(closure)
    checked = 0
    for name, drv in drvs.items():
        for env in realinputs.image_envs(closure, drv):
            for path in closure[env]["env"].get("paths", "").split():
                d = by[path][1]
                assert "env-scripts" not in d["env"].get("name", ""), (name, d["env"]["name"])
                assert not any("fxstack.cli" in str(v) for v in d["env"].values()), (name, d["env"]["name"])
                checked += 1
            files, other = realinputs.env_contents(closure, env)
            assert not other, (name, other)
    assert checked > 100


def _stale_copy(real_repo: Path, tmp_path: Path) -> Path:
    repo = tmp_path / "stale"
    shutil.copytree(real_repo, repo, symlinks=True, ignore=shutil.ignore_patterns("tests"))
    pyproject = repo / "pyproject.toml"
    text = pyproject.read_text()
    assert text.count('pandas = "2.1.0"') == 1
    pyproject.write_text(text.replace('pandas = "2.1.0"', 'pandas = "2.2.3"'))
    return repo


def _portable_refusal(repo: Path) -> str:
    sys.path.insert(0, str(fxnix.ROOT / "src"))
    from fxstack.errors import FxError
    from fxstack.lock.poetry_lock import PoetryLock
    cwd = os.getcwd()
    os.chdir(repo)
    try:
        PoetryLock(Path("poetry.lock"), Path("pyproject.toml"))
    except FxError as e:
        return str(e)
    finally:
        os.chdir(cwd)
    raise AssertionError("the portable builder accepted the stale lock")


def test_stale_lock_stops_build_run_and_flake_check(real, real_repo, standin, tmp_path):
    """The issue's change (pandas 2.1.0 -> 2.2.3 in pyproject.toml, no re-lock), with the real
    poetry2nix and nix2container: `nix build .#<image>` (a Python image and a service image),
    `nix run .#stack-up` and `nix flake check` stop at evaluation with the portable builder's
    message, where before fx-base instantiated pandas-2.1.0."""
    repo = _stale_copy(real_repo, tmp_path)
    message = _portable_refusal(repo)
    assert message.startswith("poetry.lock: poetry.lock is not consistent with pyproject.toml")
    stale = realinputs.RealFlake(repo, standin)
    attempts = {
        "nix build .#fx-base": ("eval", "--raw", f".#packages.{realinputs.SYSTEM}.fx-base.drvPath"),
        "nix build .#postgres": ("eval", "--raw", f".#packages.{realinputs.SYSTEM}.postgres.drvPath"),
        "nix run .#stack-up": ("eval", "--raw", f".#apps.{realinputs.SYSTEM}.stack-up.program"),
    }
    for what, args in attempts.items():
        with pytest.raises(realinputs.EvalFailed) as failed:
            stale._nix(*args)
        text = re.sub(r"\n {7}", "\n", str(failed.value))
        assert message in text, f"{what}:\n{failed.value}"
    proc = subprocess.run([realinputs.NIX, "flake", "check", "--no-build", *stale.flags], cwd=repo,
                          capture_output=True, text=True, env=realinputs.nix_env(), timeout=600)
    assert proc.returncode != 0, proc.stderr[-2000:]
    assert message in re.sub(r"\n {7}", "\n", proc.stderr), proc.stderr[-2000:]
    # the same flake with the lock as it is: evaluates
    assert real.eval_json(f"packages.{realinputs.SYSTEM}.fx-base.drvPath", "builtins.isString")
