"""What `./fx` costs before the command runs: whole-process time of `./fx CMD` against the same
command run directly from the same virtual environment (`.venv/bin/fxstack CMD`, which is what
`./fx` execs), medians of repeated runs, on a warm machine (one untimed run of each first).
The difference is the bootstrap's overhead (scripts/bootstrap.sh: the host lock, the venv
stamp, a live dockerd).

    .venv/bin/python bench/bootstrap_bench.py [--runs 21] [--fx PATH] [--out FILE]

`--fx` times another checkout's entry script against this venv's fxstack (to compare with an
older bootstrap). Prints a table and writes JSON (default bench/results/<date>-bootstrap.json).
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = (["specs"], ["status"])


def timed(argv: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return elapsed


def measure(fx: Path, fxstack: Path, command: list[str], runs: int) -> dict:
    through_fx, direct = [fx, *command], [fxstack, *command]
    timed([str(a) for a in through_fx], fx.parent)  # warm: page cache, a first bootstrap's work
    timed([str(a) for a in direct], ROOT)
    fx_s, direct_s = [], []
    for _ in range(runs):  # interleaved, so that load from elsewhere hits both alike
        fx_s.append(timed([str(a) for a in through_fx], fx.parent))
        direct_s.append(timed([str(a) for a in direct], ROOT))
    fx_med, direct_med = statistics.median(fx_s), statistics.median(direct_s)
    return {"command": " ".join(command), "runs": runs,
            "fx_median_s": round(fx_med, 4), "direct_median_s": round(direct_med, 4),
            "bootstrap_overhead_s": round(fx_med - direct_med, 4),
            "ratio": round(fx_med / direct_med, 3),
            "fx_s": [round(x, 4) for x in fx_s], "direct_s": [round(x, 4) for x in direct_s]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=21)
    parser.add_argument("--fx", type=Path, default=ROOT / "fx", help="the entry script to time")
    parser.add_argument("--commands", nargs="+", default=[" ".join(c) for c in COMMANDS])
    parser.add_argument("--out", type=Path,
                        default=ROOT / "bench" / "results" / f"{datetime.date.today()}-bootstrap.json")
    args = parser.parse_args(argv)
    fxstack = ROOT / ".venv" / "bin" / "fxstack"
    rows = [measure(args.fx.resolve(), fxstack, c.split(), args.runs) for c in args.commands]
    print(f"{'command':10} {'./fx (median)':>14} {'fxstack (median)':>17} {'bootstrap':>10} {'ratio':>6}")
    for r in rows:
        print(f"{r['command']:10} {r['fx_median_s']:>13.3f}s {r['direct_median_s']:>16.3f}s "
              f"{r['bootstrap_overhead_s']:>9.3f}s {r['ratio']:>6.2f}")
    doc = {"when": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "cores": os.cpu_count(), "fx": "./fx" if args.fx.resolve() == (ROOT / "fx") else args.fx.name,
           "results": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1) + "\n")
    os.replace(tmp, args.out)
    print(f"written: {args.out.relative_to(ROOT) if args.out.is_relative_to(ROOT) else args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
