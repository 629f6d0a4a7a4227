"""Follow a guide in docs/ literally, on a copy of the repository.

A guide's steps are its fenced blocks, in order:
- a block whose info string names `file=PATH` (```python file=src/x.py) is written to PATH;
- a ```diff block is a change to existing files, applied with `git apply` (as a reader would);
- a ```sh block is run with bash (-euo pipefail) in the copy's root, `./fx` included.
Other blocks (```text, ```toml without file=) are illustrations and are not run.

The copy is the checkout's tracked and untracked files (what git does not ignore), so a guide
is tried against the tree as it is. `./fx` in the copy runs the copy's own fx and bootstrap;
its `.venv` is a set of wrapper scripts around this checkout's virtual environment, with its
stamps, so the bootstrap finds it complete and nothing is installed into either.
The copy's code runs (PYTHONPATH), images are built into this checkout's state directory (its
caches make a rebuild of what did not change instant), and the stack runs as a Compose project
of its own on free ports, so nothing the user runs is touched.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
FENCE = re.compile(r"^```([^\s`]*)([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
# What the bootstrap hashes to decide whether the venv must be (re)made: a guide that changes
# these needs a new venv, which a test cannot borrow.
VENV_INPUTS = ("pyproject.toml", "requirements")
# What running a guide leaves in the copy that is not a change the guide asks for
SCRATCH = (".venv", ".fxstack", ".pytest_cache")


@dataclass(frozen=True)
class Step:
    kind: str        # file | diff | sh
    body: str
    line: int        # where the block starts in the guide, for failure messages
    path: str = ""   # file steps

    def __str__(self) -> str:
        what = f"write {self.path}" if self.kind == "file" else self.kind
        return f"step at line {self.line} ({what})"


def steps(text: str) -> list[Step]:
    out = []
    for m in FENCE.finditer(text):
        lang, info, body = m.group(1), m.group(2), m.group(3)
        line = text.count("\n", 0, m.start()) + 1
        attrs = dict(kv.split("=", 1) for kv in info.split() if "=" in kv)
        if "file" in attrs:
            out.append(Step("file", body, line, attrs["file"]))
        elif lang == "diff":
            out.append(Step("diff", body, line))
        elif lang == "sh":
            out.append(Step("sh", body, line))
    return out


def guide_steps(name: str) -> list[Step]:
    return steps((DOCS / name).read_text())


def tree_files(root: Path) -> list[str]:
    proc = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          cwd=root, capture_output=True, check=True)
    return sorted({p for p in proc.stdout.decode().split("\0") if p})


def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for name in VENV_INPUTS:
        for path in sorted([root / name] if (root / name).is_file() else (root / name).rglob("*")):
            if path.is_file():
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


class Copy:
    """A copy of the checkout that a guide is followed on."""

    def __init__(self, dest: Path, env: dict[str, str]):
        self.root = dest
        for rel in tree_files(ROOT):
            src = ROOT / rel
            if not src.exists() or src.is_dir():
                continue   # deleted in the work tree, or a submodule
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, target, follow_symlinks=False)
        self._venv_shim()
        self.venv_inputs = _digest(dest)
        self.original = self._snapshot()
        from fxstack.paths import state_dir

        self.env = {**os.environ, "FXSTACK_ROOT": str(dest), "PYTHONPATH": str(dest / "src"),
                    "FXSTACK_STATE": str(state_dir()), **env}
        self.log: list[str] = []

    def _venv_shim(self) -> None:
        venv, shim = ROOT / ".venv", self.root / ".venv"
        (shim / "bin").mkdir(parents=True)
        for tool in ("python", "python3", "pip", "fxstack"):
            script = shim / "bin" / tool
            script.write_text(f'#!/bin/sh\nexec "{venv}/bin/{tool}" "$@"\n')
            script.chmod(0o755)
        for stamp in venv.glob(".*.sha256"):
            shutil.copy2(stamp, shim / stamp.name)
        # environments of their own inside .venv (the contract tier's schemathesis): the same
        # requirements files, so the checkout's own environment serves the copy as it is
        for sub in venv.iterdir():
            if sub.is_dir() and sub.name not in ("bin", "lib", "lib64", "include", "share"):
                (shim / sub.name).symlink_to(sub)

    def apply(self, step: Step, timeout: float = 900) -> subprocess.CompletedProcess | None:
        t0 = time.monotonic()
        if step.kind == "file":
            path = self.root / step.path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(step.body)
            proc = None
        elif step.kind == "diff":
            proc = subprocess.run(["git", "apply", "--verbose", "-"], input=step.body, cwd=self.root,
                                  capture_output=True, text=True, env=self.env)
            if proc.returncode != 0:
                raise AssertionError(f"{step}: the change no longer applies to the tree:\n{proc.stderr}")
        else:
            if _digest(self.root) != self.venv_inputs:
                raise AssertionError(f"{step}: the guide changed {' or '.join(VENV_INPUTS)}; `./fx` would "
                                     "make a new virtual environment, which this test does not do")
            proc = subprocess.run(["bash", "-euo", "pipefail", "-c", step.body], cwd=self.root,
                                  capture_output=True, text=True, env=self.env, timeout=timeout)
            if proc.returncode != 0:
                raise AssertionError(f"{step} failed (exit {proc.returncode}):\n$ {step.body}\n"
                                     f"{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
        self.log.append(f"{time.monotonic() - t0:6.1f}s  {step}")
        return proc

    def follow(self, guide: list[Step]) -> list[subprocess.CompletedProcess | None]:
        return [self.apply(step) for step in guide]

    def _snapshot(self) -> dict[str, str]:
        out = {}
        for top, dirs, files in os.walk(self.root):
            rel_top = Path(top).relative_to(self.root)
            dirs[:] = [d for d in dirs if d != "__pycache__" and not (rel_top == Path(".") and d in SCRATCH)
                       and not (rel_top == Path("compose") and d == "secrets")]
            for name in files:
                path = Path(top) / name
                if not path.is_symlink() and not (rel_top == Path("compose") and name.endswith(".env")):
                    out[str(rel_top / name)] = hashlib.sha256(path.read_bytes()).hexdigest()
        return out

    def touched(self) -> list[str]:
        """The files the guide added or changed (not what running it wrote: caches, secrets)."""
        now = self._snapshot()
        return sorted(rel for rel, digest in now.items() if self.original.get(rel) != digest)
