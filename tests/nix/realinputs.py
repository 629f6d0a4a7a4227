"""The real nix2container and poetry2nix, and the real nixpkgs `lib`, in the local Nix store.

flake.lock pins nix2container and poetry2nix by rev and narHash. A tree exported at that rev
(`git archive REV | tar -x`) has exactly that narHash, and added to the store under the name
`source` it lands at the very store path the locked GitHub input resolves to: the flake then
evaluates with its real inputs and no network. nixpkgs itself is too large to have here; the
`nixreal` tests replace it, and only it, by tests/nix/standins/nixpkgs-real, which runs on the
real nixpkgs `lib` (nix-community/nixpkgs.lib at REAL_LIB's rev, the last lib change before the
pinned nixpkgs 75e28c02 of 2024-10-28).

    python tests/nix/realinputs.py seed DIR...   (./fx nix-seed DIR...)
    python tests/nix/realinputs.py status

DIR is either an exported tree or a git repository (bare or not) that has the pinned revision;
nothing is fetched. On a machine with GitHub, `nix flake archive` puts the two locked inputs in
the store; the nixpkgs.lib tree comes from `git clone https://github.com/nix-community/nixpkgs.lib`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
STANDIN = HERE / "standins" / "nixpkgs-real"
NIX = shutil.which("nix")
NIX_STORE = shutil.which("nix-store")


@dataclass(frozen=True)
class Pin:
    name: str          # flake input name, or "nixpkgs-lib"
    repo: str          # owner/name on GitHub
    rev: str
    nar_hash: str      # SRI sha256


# nixpkgs' lib as of the pinned nixpkgs (75e28c02, 2024-10-28 23:14 UTC): nixpkgs.lib mirrors
# every lib/ change of nixpkgs; 31758a56 (2024-10-27) is the last one before that revision.
REAL_LIB = Pin("nixpkgs-lib", "nix-community/nixpkgs.lib",
               "31758a561f57554455d6e3e9d6057042a874e505",
               "sha256-dtnJ0y5Cx3RdOl+8B4hqw52kvy9Ld0jRCSTdqNYpuaU=")


def nix_env() -> dict[str, str]:
    """The machine's own store (where `nix flake archive` or `nix-seed` put the inputs), with
    no substituter and no user config: nothing is downloaded, nothing else changes evaluation."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("NIX_")}
    env["NIX_CONFIG"] = "\n".join([
        "experimental-features = nix-command flakes",
        "substituters =",
        "build-users-group =",
        "warn-dirty = false",
    ])
    env.setdefault("HOME", tempfile.gettempdir())
    return env


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, env=nix_env(), **kw)


def locked_pins(root: Path = ROOT) -> list[Pin]:
    """The flake.lock inputs this machine can have (all but nixpkgs), then the real lib."""
    nodes = json.loads((root / "flake.lock").read_text())["nodes"]
    pins = []
    for name in ("nix2container", "poetry2nix"):
        locked = nodes[name]["locked"]
        pins.append(Pin(name, f"{locked['owner']}/{locked['repo']}", locked["rev"], locked["narHash"]))
    return pins + [REAL_LIB]


def store_path(pin: Pin) -> str:
    """Where a tree with this narHash lands when added under the name `source`."""
    b32 = run([NIX, "hash", "to-base32", pin.nar_hash]).stdout.strip()
    proc = run([NIX_STORE, "--print-fixed-path", "--recursive", "sha256", b32, "source"])
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    return proc.stdout.strip()


def present(pin: Pin) -> bool:
    return run([NIX_STORE, "--check-validity", store_path(pin)]).returncode == 0


def missing(root: Path = ROOT) -> list[Pin]:
    """Pins not in the store; [] when the nixreal tier can run. Raises nothing: a machine
    without Nix has everything missing."""
    if NIX is None or NIX_STORE is None:
        return locked_pins(root)
    return [p for p in locked_pins(root) if not present(p)]


def why_not(root: Path = ROOT) -> str | None:
    """None when the nixreal tier can run, else the reason it cannot, with what to do."""
    if NIX is None or NIX_STORE is None:
        return "Nix is not installed (Debian: apt-get install nix-bin)"
    gone = missing(root)
    if gone:
        names = ", ".join(f"{p.repo}@{p.rev[:8]}" for p in gone)
        return (f"the locked inputs are not in the Nix store ({names}); "
                "bring them with `./fx nix-seed DIR...` (docs/nix.md, 'Evaluating with the real code')")
    return None


def nar_hash(tree: Path) -> str:
    proc = run([NIX, "hash", "path", "--type", "sha256", "--sri", str(tree)])
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.strip())
    return proc.stdout.strip()


def _is_git(path: Path) -> bool:
    return subprocess.run(["git", "-C", str(path), "rev-parse", "--git-dir"],
                          capture_output=True).returncode == 0


def _has_rev(repo: Path, rev: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{rev}^{{commit}}"],
                          capture_output=True).returncode == 0


def _add(pin: Pin, tree: Path) -> str:
    """Add `tree` (already checked) to the store as `source`; return the store path."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "source"
        shutil.copytree(tree, src, symlinks=True)
        proc = run([NIX_STORE, "--add", str(src)])
    if proc.returncode != 0:
        raise RuntimeError(f"nix-store --add failed for {pin.repo}: {proc.stderr.strip()}")
    got, want = proc.stdout.strip(), store_path(pin)
    if got != want:
        raise RuntimeError(f"{pin.repo}: added as {got}, but the lock resolves to {want}")
    return got


def seed(dirs: list[Path], root: Path = ROOT) -> list[str]:
    """Add every pinned input found in `dirs` to the store, after checking its narHash.
    Returns what it did, one line each; raises if a pin is still missing afterwards."""
    if NIX is None:
        raise RuntimeError("Nix is not installed (Debian: apt-get install nix-bin)")
    pins = locked_pins(root)
    done: list[str] = []
    wanted = {p.nar_hash: p for p in pins}
    for d in dirs:
        d = d.resolve()
        if _is_git(d):
            for pin in pins:
                if not _has_rev(d, pin.rev):
                    continue
                with tempfile.TemporaryDirectory() as tmp:
                    tree = Path(tmp) / "source"
                    tree.mkdir()
                    archive = subprocess.run(["git", "-C", str(d), "archive", "--format=tar", pin.rev],
                                             capture_output=True, check=True).stdout
                    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
                    done.append(_check_and_add(pin, tree, f"{d} @ {pin.rev[:8]}"))
            continue
        got = nar_hash(d)
        pin = wanted.get(got)
        if pin is None:
            raise RuntimeError(f"{d}: narHash {got} is none of the pinned inputs' "
                               f"({', '.join(f'{p.name} {p.nar_hash}' for p in pins)})")
        done.append(_check_and_add(pin, d, str(d)))
    gone = [p for p in pins if not present(p)]
    if gone:
        raise RuntimeError("still missing: " + ", ".join(f"{p.repo}@{p.rev}" for p in gone)
                           + "\n(" + "\n ".join(done) + ")")
    return done


def _check_and_add(pin: Pin, tree: Path, where: str) -> str:
    got = nar_hash(tree)
    if got != pin.nar_hash:
        raise RuntimeError(f"{where}: narHash {got}, but {pin.name} is pinned at {pin.nar_hash}")
    path = _add(pin, tree)
    return f"{pin.name}: {where} -> {path} (narHash {got} as locked)"


def standin_tree(dest: Path, root: Path = ROOT) -> Path:
    """The nixpkgs stand-in as a flake directory: tests/nix/standins/nixpkgs-real plus the real
    lib/ from the store. `--override-input nixpkgs path:<dest>` then replaces nixpkgs only."""
    lib = Path(store_path(REAL_LIB)) / "lib"
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(STANDIN, dest)
    shutil.copytree(lib, dest / "lib")
    for p in dest.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)
    dest.chmod(0o755)
    return dest


def main(argv: list[str]) -> int:
    if argv[:1] == ["seed"] and len(argv) > 1:
        try:
            for line in seed([Path(a) for a in argv[1:]]):
                print("nix-seed:", line)
        except (RuntimeError, subprocess.CalledProcessError) as e:
            print(f"nix-seed: {e}", file=sys.stderr)
            return 1
        print("nix-seed: every pinned input is in the store; `./fx check-nix-real` can run")
        return 0
    if argv[:1] == ["status"]:
        reason = why_not()
        print("nixreal: inputs present" if reason is None else f"nixreal: cannot run: {reason}")
        return 0 if reason is None else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))


# --- evaluating the flake with the real inputs ---------------------------------------------------

SYSTEM = "x86_64-linux"
# Output categories and how an output of each is instantiated.
DRV_CATEGORIES = ("packages", "checks", "devShells", "legacyPackages")


def _stash_key():
    try:
        import pytest
        return pytest.StashKey[tuple]()
    except ImportError:  # the seed command runs without pytest
        return None


# What the nixreal tests measured, for the summary line (tests/nix/conftest.py).
OUTPUTS_KEY = _stash_key()   # (instantiated, total)
WHEELS_KEY = _stash_key()    # (packages checked, problems)


class EvalFailed(Exception):
    pass


class RealFlake:
    """flake.nix in `repo`, with nix2container and poetry2nix resolved from flake.lock (the
    store paths seeded above) and nixpkgs overridden by the stand-in tree `standin`."""

    def __init__(self, repo: Path, standin: Path):
        self.repo, self.standin = repo, standin
        self.flags = ["--offline", "--no-write-lock-file",
                      "--override-input", "nixpkgs", f"path:{standin}"]

    def _nix(self, *args: str, timeout: int = 600) -> str:
        proc = subprocess.run([NIX, *args[:1], *self.flags, *args[1:]], cwd=self.repo,
                              capture_output=True, text=True, env=nix_env(), timeout=timeout)
        if proc.returncode != 0:
            err = "\n".join(l for l in proc.stderr.splitlines()
                            if not l.startswith(("warning: not writing", "• Updated input", "    '", "  → ")))
            raise EvalFailed(err.strip())
        return proc.stdout

    def eval_json(self, attr: str, apply: str | None = None):
        args = ["eval", "--json", f".#{attr}"]
        if apply:
            args += ["--apply", apply]
        return json.loads(self._nix(*args))

    def outputs(self) -> dict[str, str]:
        """Every output as `name -> installable` (apps: their program, which instantiates the
        script): packages, checks, the devShell, the formatter, legacyPackages' derivations
        (stack-scripts one by one) and apps."""
        out = {}
        for cat in ("packages", "checks", "devShells"):
            for n in self.eval_json(f"{cat}.{SYSTEM}", "builtins.attrNames"):
                out[f"{cat}.{n}"] = f".#{cat}.{SYSTEM}.{n}"
        out["formatter"] = f".#formatter.{SYSTEM}"
        legacy = self.eval_json(f"legacyPackages.{SYSTEM}",
                                "l: builtins.mapAttrs (n: v: if v ? drvPath then [] else builtins.attrNames v) l")
        for n, sub in legacy.items():
            for key in ([n] if not sub else [f"{n}.{s}" for s in sub]):
                out[f"legacyPackages.{key}"] = f".#legacyPackages.{SYSTEM}.{key}"
        for n in self.eval_json(f"apps.{SYSTEM}", "builtins.attrNames"):
            out[f"apps.{n}"] = f"app:{n}"
        return out

    def instantiate(self, outputs: dict[str, str]) -> tuple[dict[str, str], dict[str, dict]]:
        """Instantiate every output in one evaluation; where that fails, each one alone, to
        say which fail. Returns (name -> error for the failures, the derivation closure)."""
        drvs = [i for i in outputs.values() if not i.startswith("app:")]
        apps = [i[4:] for i in outputs.values() if i.startswith("app:")]
        try:
            closure = json.loads(self._nix("show-derivation", "-r", *drvs))
            self.eval_json(f"apps.{SYSTEM}", "as: builtins.mapAttrs (n: a: a.program) as")
            return {}, closure
        except EvalFailed:
            pass
        errors, closure = {}, {}
        for name, inst in outputs.items():
            try:
                if inst.startswith("app:"):
                    self.eval_json(f"apps.{SYSTEM}.{inst[4:]}.program")
                else:
                    closure.update(json.loads(self._nix("show-derivation", "-r", inst)))
            except EvalFailed as e:
                errors[name] = _first_error(str(e))
        return errors, closure


def _first_error(text: str) -> str:
    for line in text.splitlines():
        if line.startswith("error:"):
            return line
    return text.splitlines()[0] if text else "failed"


# --- what each image installs, read from the instantiated derivations ----------------------------

SAME_FILES_KEY = _stash_key()  # (images that install the portable builder's files, images)


def image_drvs(flake: RealFlake) -> dict[str, str]:
    """image name -> its .drv (packages.<system>.<name>)."""
    return flake.eval_json(f"packages.{SYSTEM}",
                           "ps: builtins.mapAttrs (n: p: builtins.unsafeDiscardStringContext p.drvPath) ps")


def _by_out(closure: dict) -> dict[str, tuple[str, dict]]:
    return {o["path"]: (drv, d) for drv, d in closure.items() for o in d["outputs"].values()}


def is_env(d: dict) -> bool:
    name = d["env"].get("name", "")
    return name.startswith("python3") and name.endswith("-env")


def image_envs(closure: dict, image_drv: str) -> list[str]:
    """The Python environments an image's layers hold: every env derivation reachable from the
    image through its inputs, not looking inside an environment (its build tools)."""
    seen, todo, envs = set(), [image_drv], []
    while todo:
        drv = todo.pop()
        if drv in seen or drv not in closure:
            continue
        seen.add(drv)
        if is_env(closure[drv]):
            envs.append(drv)
            continue
        todo.extend(closure[drv]["inputDrvs"])
    return sorted(envs)


def env_contents(closure: dict, env_drv: str) -> tuple[set[tuple[str, str, str, str]], list[str]]:
    """What one environment installs: {(name, version, file, sha256)} of every Python package
    built from a locked file, and a description of every other path in it (the interpreter
    excepted), e.g. a scripts package or a package taken from nixpkgs."""
    by = _by_out(closure)
    files, other = set(), []
    for path in closure[env_drv]["env"].get("paths", "").split():
        drv, d = by.get(path, (None, None))
        if d is None:
            other.append(f"{path} (not instantiated)")
            continue
        e = d["env"]
        if e.get("pname") == "python3" or e.get("name", "").startswith("python3-"):
            continue  # the interpreter
        src = by.get(e.get("src", ""), (None, None))[1]
        if "pname" in e and src is not None and src["env"].get("outputHash", "").startswith("sha256:"):
            files.add((e["pname"], e["version"], src["env"]["name"], src["env"]["outputHash"][len("sha256:"):]))
        else:
            other.append(e.get("name", drv))
    return files, sorted(other)


def portable_files(root: Path, groups) -> set[tuple[str, str, str, str]]:
    sys.path.insert(0, str(root / "src"))
    from fxstack.lock.poetry_lock import PoetryLock
    lock = PoetryLock(root / "poetry.lock", root / "pyproject.toml")
    return {(f.name, f.version, f.filename, f.sha256) for f in lock.files_for(groups)}


def compare_images(root: Path, closure: dict, drvs: dict[str, str], specs: dict) -> dict[str, list[str]]:
    """image -> differences between what the Nix path and the portable builder install
    (empty list: the same files), for every Python image."""
    out = {}
    for name, spec in sorted(specs.items()):
        if spec["kind"] != "python":
            continue
        nix, other = set(), []
        for env in image_envs(closure, drvs[name]):
            f, o = env_contents(closure, env)
            nix |= f
            other += o
        port = portable_files(root, spec["groups"])
        diffs = [f"only Nix: {n} {v} {f}" for n, v, f, _ in sorted(nix - port)]
        diffs += [f"only portable: {n} {v} {f}" for n, v, f, _ in sorted(port - nix)]
        diffs += [f"not from the lock: {o}" for o in sorted(set(other))]
        out[name] = diffs
    return out
