"""Stack benchmark: images loaded -> all CPU services healthy, the DAG end to end, and
`POST /predict` latency at 50 concurrent connections from wrk on 127.0.0.1.

Runs its own Compose project (`fxstack-bench`) from nothing and removes it (with its volumes)
at the end. Prints a table and writes JSON (default bench/results/stack-latest.json).

    ./fx bench-stack
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from fxstack.stack.docker_state import free_port
from wrk import wrk_post

ROOT = Path(__file__).resolve().parents[1]
PORT_VARS = ("FX_AIRFLOW_PORT", "FX_MLFLOW_PORT", "FX_API_PORT", "FX_PROMETHEUS_PORT", "FX_GRAFANA_PORT")


def wrk_predict(api: str, pair: str, seconds: int, connections: int) -> dict:
    return wrk_post(f"{api}/predict", {"pair": pair}, seconds, connections)


def first_predicts_after_restart(target, count: int, out) -> dict:
    """`down` (volumes kept) and `up`, then `count` POST /predict at once, each on a new
    connection: with a model registered, `up` returns only when every worker serves it."""
    from fxstack.stack import lifecycle
    from fxstack.stacks import fx_e2e as e2e

    lifecycle.down(target, volumes=False, out=out)
    up = lifecycle.up(target, build=False, out=out)
    ep = e2e.endpoints(target)
    answers = []
    for _ in range(count):
        t0 = time.perf_counter()
        r = e2e.predict(ep, ep.pairs[0])
        answers.append((r.status_code, (time.perf_counter() - t0) * 1000))
    return {"up_s": round(up.seconds, 1), "statuses": [s for s, _ in answers],
            "first_ms": round(answers[0][1], 1), "all_200": all(s == 200 for s, _ in answers)}


def docker_proxy_running() -> bool:
    """Whether published ports go through docker-proxy (dockerd's userland proxy) here."""
    return subprocess.run(["pgrep", "-x", "docker-proxy"], capture_output=True).returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "stack-latest.json"))
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10,
                    help="seconds of the same load first, reported apart (0: none)")
    ap.add_argument("--retrain", type=int, default=15,
                    help="seconds of the same load while the DAG runs a second time (0: skip)")
    ap.add_argument("--keep", action="store_true", help="leave the stack running")
    ap.add_argument("--no-build", action="store_true", help="use .fxstack/images.env as it is")
    ap.add_argument("--restart", type=int, default=20,
                    help="after the loads: down + up (volumes kept), then this many POST /predict at "
                         "once, each on a new connection (0: skip)")
    args = ap.parse_args()
    from fxstack.stack import lifecycle
    from fxstack.stack.target import Target
    from fxstack.stacks import fx_e2e as e2e
    from fxstack.stacks.fx import FX

    target = Target(FX, project="fxstack-bench",
                    env_file=Path(tempfile.mkdtemp(prefix="fxstack-bench-")) / "secrets.env",
                    overrides={var: str(free_port()) for var in PORT_VARS})

    out = sys.stderr
    result: dict = {}
    try:
        lifecycle.down(target, volumes=True, out=out)
        up = lifecycle.up(target, build=not args.no_build, out=out)
        result["images_loaded_to_all_healthy_s"] = round(up.seconds, 1)
        run = e2e.run(target, out=out)
        result["dag_trigger_to_served_prediction_s"] = round(run.dag_seconds, 1)
        result["model_version"] = run.model_version
        ep = e2e.endpoints(target)
        if args.warmup:
            # The first-model window: right after the first DAG run one worker serves the new
            # model and the others load it in the background (answering 503 at once meanwhile),
            # while Airflow finishes the run; reported, not mixed into steady state
            result["predict_load_warmup"] = wrk_predict(ep.api, ep.pairs[0], args.warmup,
                                                        args.connections)
            result["first_model_window_p99_ms"] = result["predict_load_warmup"].get("p99_ms")
        result["predict_load"] = wrk_predict(ep.api, ep.pairs[0], args.seconds, args.connections)
        if args.retrain:
            # The same load while the DAG runs again: training and materialisation take the
            # same 2 cores, and every worker swaps to the new version while serving the old.
            done = threading.Event()
            second: dict = {}

            def rerun():
                try:
                    second["run"] = e2e.run(target, out=open(os.devnull, "w"))
                except Exception as exc:  # reported in the JSON, the load result still counts
                    second["error"] = f"{type(exc).__name__}: {exc}"
                finally:
                    done.set()
            threading.Thread(target=rerun, daemon=True).start()
            time.sleep(1)
            load = wrk_predict(ep.api, ep.pairs[0], args.retrain, args.connections)
            done.wait(600)
            load["dag_error"] = second.get("error")
            load["model_version_after"] = getattr(second.get("run"), "model_version", None)
            result["predict_load_during_second_dag"] = load
        if args.restart:
            result["first_predict_after_down_up"] = first_predicts_after_restart(target, args.restart, out)
        result["docker_proxy_in_path"] = docker_proxy_running()
        result["cpus"] = os.cpu_count()
    finally:
        if not args.keep:
            lifecycle.down(target, volumes=True, out=out)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    load = result.get("predict_load", {})
    print(f"\n{'measure':48} {'value':>12}  target")
    print(f"{'images loaded -> all CPU services healthy':48} {result['images_loaded_to_all_healthy_s']:>11.1f}s  < 120 s")
    print(f"{'DAG: trigger -> registered model -> served':48} {result['dag_trigger_to_served_prediction_s']:>11.1f}s  < 300 s")
    print(f"{'POST /predict p50 (' + str(args.connections) + ' connections, wrk)':48} {load.get('p50_ms') or float('nan'):>10.2f}ms  < 20 ms")
    print(f"{'POST /predict p99':48} {load.get('p99_ms') or float('nan'):>10.2f}ms  < 100 ms")
    print(f"{'POST /predict requests/s':48} {load.get('requests_per_s') or float('nan'):>12.0f}")
    warm = result.get("predict_load_warmup")
    if warm:
        print(f"{'first-model window p99 (' + str(args.warmup) + ' s after the DAG)':48} "
              f"{warm.get('p99_ms') or float('nan'):>10.2f}ms  < 100 ms"
              f"  (p50 {warm.get('p50_ms') or float('nan'):.1f} ms, non-2xx {warm.get('non_2xx')})")
    again = result.get("predict_load_during_second_dag")
    if again:
        print(f"{'  while the DAG retrains and swaps the model: p50, p99':48} "
              f"{again.get('p50_ms') or float('nan'):>7.1f}, {again.get('p99_ms') or float('nan'):.1f} ms"
              f"  ({again.get('requests_per_s') or 0:.0f} req/s, non-2xx {again.get('non_2xx')}, "
              f"now v{again.get('model_version_after')})")
    restart = result.get("first_predict_after_down_up")
    if restart:
        print(f"{'first POST /predict after down + up':48} {restart['statuses'][0]:>12}  200"
              f"  ({restart['first_ms']:.0f} ms; {restart['statuses'].count(200)}/{len(restart['statuses'])} "
              f"answered 200; up {restart['up_s']:.1f} s)")
    print(f"{'  docker-proxy in the path':48} {str(result.get('docker_proxy_in_path')):>12}")
    print(f"{'errors (non-2xx, socket)':48} {str(load.get('non_2xx')) + ', ' + (load.get('socket_errors') or 'none'):>12}")
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
