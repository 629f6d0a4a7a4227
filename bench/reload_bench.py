"""`fxstack build fx-fastapi --load` after a one-line change, as a whole process, interleaved
runs of: fxstack with its byte-code, fxstack without (PYTHONDONTWRITEBYTECODE, nothing
cached: every run compiles its modules), and optionally an older fxstack source tree.

    .venv/bin/python bench/reload_bench.py --runs 9 [--before REV]

Runs in a copy of the checkout with a state of its own that starts as a copy of the
checkout's (bench/code_change.py), so fx-fastapi's earlier image is in Docker as after any
`fxstack build --load`. Writes JSON (default bench/results/reload-latest.json).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from code_change import APP, ROOT, copy_checkout, seed_state


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--before", help="also time the fxstack sources of this git revision")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "reload-latest.json"))
    args = ap.parse_args()
    from fxstack.envfile import read_env
    from fxstack.image.builder import cache_dir
    from fxstack.paths import state_dir

    work = Path(tempfile.mkdtemp(prefix="fxbench-reload-"))
    made: set[str] = set()
    try:
        repo, state = copy_checkout(work / "repo"), work / "state"
        seed_state(state, state_dir())
        env = dict(os.environ, FXSTACK_ROOT=str(repo), FXSTACK_STATE=str(state),
                   FXSTACK_CACHE=str(cache_dir(state_dir())))
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        import fxstack

        compileall.compile_dir(Path(fxstack.__file__).parent, quiet=1)
        configs = {"byte-code": env,
                   "no byte-code": dict(env, PYTHONDONTWRITEBYTECODE="1",
                                        PYTHONPYCACHEPREFIX=str(work / "no-pyc"))}
        if args.before:
            old = work / "before"
            old.mkdir()
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "src"],
                                     capture_output=True, check=True).stdout
            subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
            compileall.compile_dir(old / "src" / "fxstack", quiet=1)
            configs[f"{args.before}, byte-code"] = dict(env, PYTHONPATH=str(old / "src"))
        # the first load after the copy goes through the registry: not what is measured
        subprocess.run([sys.executable, "-m", "fxstack.cli", "build", "fx-fastapi", "--load"], env=env,
                       check=True, capture_output=True)
        runs: dict[str, list[float]] = {name: [] for name in configs}
        for _ in range(args.runs):
            for name, cfg in configs.items():
                with open(repo / APP, "a") as f:
                    f.write(f"# a one-line change {time.time_ns()}\n")
                started = time.perf_counter()
                proc = subprocess.run([sys.executable, "-m", "fxstack.cli", "build", "fx-fastapi", "--load"],
                                      env=cfg, capture_output=True, text=True)
                took = time.perf_counter() - started
                if proc.returncode != 0 or "loaded" not in proc.stderr:
                    raise RuntimeError(f"{name}: fxstack build --load failed:\n{proc.stderr[-2000:]}")
                runs[name].append(round(took, 3))
                made.add(read_env(state / "images.env")["FX_FASTAPI_IMAGE"])
        result = {name: {"median_s": statistics.median(v), "runs_s": v} for name, v in runs.items()}
        result["load_average_after"] = os.getloadavg()
    finally:
        if made:  # every image a run loaded (the checkout's own is not among them)
            subprocess.run(["docker", "image", "rm", *sorted(made)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    for name, row in result.items():
        if isinstance(row, dict):
            print(f"{name:28} median {row['median_s']:.3f} s  ({len(row['runs_s'])} runs)")
    print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
