"""The stacks' health checks, before and after a change of the Compose files: `up` of a stopped
stack (volumes kept, images loaded) to every service ready, and the CPU the idle stack then uses
(the whole machine's, from /proc/stat, so run it on a quiet one).

Both variants run the same images and the same data: the "before" one is this checkout with the
Compose files of --before REV (`git show`), through FXSTACK_ROOT. Variants alternate, round by
round, so a machine that gets busier affects both:

    .venv/bin/python bench/health_bench.py --before 967b954 --out bench/results/<date>-health.json
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMPOSE_FILES = {"fx": "compose/docker-compose.yml", "bsopt": "compose/bsopt.yml"}


def variant_root(tmp: Path, rev: str | None) -> Path:
    """A root that is this checkout except for the Compose files, which come from `rev`
    (this checkout's own when None). The compose directory is a copy (its env files and secrets
    included, so the data's passwords match); everything else a symbolic link."""
    root = tmp / (rev or "checkout")
    root.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in ("compose", ".git"):
            (root / entry.name).symlink_to(entry)
    shutil.copytree(ROOT / "compose", root / "compose", symlinks=True)
    if rev:
        for path in COMPOSE_FILES.values():
            text = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:{path}"], check=True,
                                  capture_output=True, text=True).stdout
            (root / path).write_text(text)
    return root


def busy_cores(seconds: float) -> float:
    def busy_ticks() -> int:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        return sum(fields) - fields[3] - fields[4]   # all but idle and iowait

    before = busy_ticks()
    time.sleep(seconds)
    return (busy_ticks() - before) / os.sysconf("SC_CLK_TCK") / seconds


def fx(root: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, FXSTACK_ROOT=str(root), FXSTACK_STATE=str(ROOT / ".fxstack"))
    return subprocess.run([str(Path(sys.executable).with_name("fxstack")), *args], env=env,
                          capture_output=True, text=True)


def one(root: Path, stack: str, idle_s: float, settle_s: float) -> dict:
    fx(root, "down", stack)
    up = fx(root, "up", stack, "--no-build")
    if up.returncode != 0:
        raise SystemExit(f"`fxstack up {stack}` failed in {root}:\n{up.stdout[-3000:]}{up.stderr[-3000:]}")
    ready = re.search(r"all \d+ services ready in ([\d.]+) s", up.stdout + up.stderr)
    time.sleep(settle_s)
    return {"ready_s": float(ready.group(1)), "idle_cores": round(busy_cores(idle_s), 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True, help="the revision whose Compose files are 'before'")
    ap.add_argument("--stacks", nargs="+", default=list(COMPOSE_FILES), choices=list(COMPOSE_FILES))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--idle", type=float, default=30, help="seconds of CPU sampling per run")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "health-latest.json"))
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="fx-health-") as t:
        roots = {"before": variant_root(Path(t), args.before), "after": variant_root(Path(t), None)}
        runs: dict = {s: {v: [] for v in roots} for s in args.stacks}
        try:
            for stack in args.stacks:
                for _ in range(args.rounds):
                    for variant, root in roots.items():
                        runs[stack][variant].append(one(root, stack, args.idle, settle_s=10))
                        print(stack, variant, runs[stack][variant][-1], file=sys.stderr, flush=True)
                fx(roots["after"], "down", stack)
        finally:
            for stack in args.stacks:
                fx(roots["after"], "down", stack)

    print(f"{'stack':6} {'variant':7} {'up to ready, s (median)':>24} {'idle CPU, cores (median)':>25}")
    summary = {}
    for stack, variants in runs.items():
        for variant, rs in variants.items():
            med = {k: statistics.median(r[k] for r in rs) for k in ("ready_s", "idle_cores")}
            summary.setdefault(stack, {})[variant] = med
            print(f"{stack:6} {variant:7} {med['ready_s']:24.1f} {med['idle_cores']:25.3f}")
    result = {"before": args.before, "after": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                                             capture_output=True, text=True).stdout.strip(),
              "rounds": args.rounds, "idle_s": args.idle, "runs": runs, "median": summary}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2))
    tmp.replace(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
