"""Stack benchmark: images loaded -> all CPU services healthy, the DAG end to end, and
`POST /predict` latency at 50 concurrent connections from wrk on 127.0.0.1.

Runs its own Compose project (`fxstack-bench`) from nothing and removes it (with its volumes)
at the end. Prints a table and writes JSON (default bench/results/stack-latest.json).

    ./fx bench-stack
    ./fx bench-stack --only-code-change   # a one-line change reaching the stack, ours and the baseline
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

import code_change
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


def cpu_seconds_by_service(project: str) -> dict[str, float]:
    """CPU seconds each of the project's containers has used so far (cgroup v1 or v2), so a
    load window can say which service took the 2 cores while wrk ran."""
    import docker

    used: dict[str, float] = {}
    for c in docker.from_env().containers.list(filters={"label": f"com.docker.compose.project={project}"}):
        service = c.labels.get("com.docker.compose.service", c.name)
        for path, scale in ((f"/sys/fs/cgroup/cpuacct/docker/{c.id}/cpuacct.usage", 1e-9),
                            (f"/sys/fs/cgroup/system.slice/docker-{c.id}.scope/cpu.stat", 1e-6),
                            (f"/sys/fs/cgroup/docker/{c.id}/cpu.stat", 1e-6)):
            try:
                text = Path(path).read_text()
            except OSError:
                continue
            value = int(text.split()[0]) if path.endswith(".usage") else \
                int(next(l.split()[1] for l in text.splitlines() if l.startswith("usage_usec")))
            used[service] = used.get(service, 0.0) + value * scale
            break
    return used


def wrk_with_cpu(project: str, api: str, pair: str, seconds: int, connections: int) -> dict:
    """wrk_predict, plus the CPU seconds each service used during it (largest first)."""
    before = cpu_seconds_by_service(project)
    result = wrk_predict(api, pair, seconds, connections)
    after = cpu_seconds_by_service(project)
    result["cpu_s_by_service"] = dict(sorted(
        ((s, round(after[s] - before.get(s, 0.0), 2)) for s in after), key=lambda kv: -kv[1]))
    return result


def model_loads(project: str, since: float) -> list[dict]:
    """When each API worker started serving a model version, in seconds after `since` (the
    window's start), from the fastapi container's log."""
    import docker
    from datetime import datetime

    loads = []
    for c in docker.from_env().containers.list(filters={
            "label": [f"com.docker.compose.project={project}", "com.docker.compose.service=fastapi"]}):
        for line in c.logs(timestamps=True, since=int(since) - 1).decode(errors="replace").splitlines():
            if "serving model" in line:
                stamp, _, text = line.partition(" ")
                at = datetime.fromisoformat(stamp[:26].rstrip("Z") + "+00:00").timestamp()
                loads.append({"at_s": round(at - since, 2), "line": text.strip()[-120:]})
    return sorted(loads, key=lambda l: l["at_s"])


class Prober(threading.Thread):
    """One POST /predict every 20 ms on its own connection beside wrk: when in the window
    the slow answers came (seconds from its start) and with which status, which wrk's
    percentiles do not say."""

    def __init__(self, api: str, pair: str, seconds: float):
        super().__init__(daemon=True)
        self.api, self.pair, self.seconds = api, pair, seconds
        self.samples: list[tuple[float, float, int]] = []

    def run(self) -> None:
        import http.client
        from urllib.parse import urlsplit

        url = urlsplit(self.api)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=10)
        body = json.dumps({"pair": self.pair})
        start = time.perf_counter()
        while (now := time.perf_counter()) - start < self.seconds:
            try:
                conn.request("POST", "/predict", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                status = resp.status
            except OSError:
                conn.close()
                status = 0
            self.samples.append((round(now - start, 3), round((time.perf_counter() - now) * 1000, 1), status))
            time.sleep(max(0.0, 0.02 - (time.perf_counter() - now)))

    def summary(self) -> dict:
        by_status: dict[str, int] = {}
        for _, _, status in self.samples:
            by_status[str(status)] = by_status.get(str(status), 0) + 1
        slow = sorted(self.samples, key=lambda s: -s[1])[:15]
        return {"requests": len(self.samples), "statuses": by_status,
                "first_200_at_s": next((t for t, _, st in self.samples if st == 200), None),
                "slowest": [{"at_s": t, "ms": ms, "status": st} for t, ms, st in sorted(slow)]}


def first_model_window(target, ep, seconds: int, connections: int, out) -> tuple[dict, object]:
    """The first DAG run, with `seconds` of load from the moment its model is registered (the
    MLflow alias appears), while every API worker finds and loads it: the window in which a
    worker that held requests during its first load would show. Returns (load, e2e result)."""
    from fxstack.stacks import fx_e2e as e2e

    done: dict = {}

    def dag():
        try:
            done["run"] = e2e.run(target, out=out)
        except BaseException as exc:  # re-raised below, in the caller's thread
            done["error"] = exc
    thread = threading.Thread(target=dag, daemon=True)
    thread.start()
    while thread.is_alive():
        try:
            e2e.serving_version(ep)
            break
        except Exception:  # no alias yet (404), or MLflow busy: ask again
            time.sleep(0.1)
    started = time.time()
    probe = Prober(ep.api, ep.pairs[0], seconds)
    probe.start()
    load = wrk_with_cpu(target.project_name, ep.api, ep.pairs[0], seconds, connections)
    probe.join()
    load["model_loads"] = model_loads(target.project_name, started)
    load["probe"] = probe.summary()
    thread.join(900)
    if "error" in done:
        raise done["error"]
    return load, done["run"]


def docker_proxy_running() -> bool:
    """Whether published ports go through docker-proxy (dockerd's userland proxy) here."""
    return subprocess.run(["pgrep", "-x", "docker-proxy"], capture_output=True).returncode == 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "stack-latest.json"))
    ap.add_argument("--seconds", type=int, default=20)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10,
                    help="seconds of the same load from the moment the first model is registered, "
                         "reported apart (0: none)")
    ap.add_argument("--retrain", type=int, default=15,
                    help="seconds of the same load while the DAG runs a second time (0: skip)")
    ap.add_argument("--keep", action="store_true", help="leave the stack running")
    ap.add_argument("--no-build", action="store_true", help="use .fxstack/images.env as it is")
    ap.add_argument("--restart", type=int, default=20,
                    help="after the loads: down + up (volumes kept), then this many POST /predict at "
                         "once, each on a new connection (0: skip)")
    ap.add_argument("--code-change", type=int, default=3, metavar="N",
                    help="then a one-line change of the inference API reaching the running stack, N times "
                         "ours (`fxstack up`) and N times the Dockerfile baseline (bench/code_change.py; 0: skip)")
    ap.add_argument("--only-code-change", action="store_true", help="run only that scenario")
    ap.add_argument("--skip-baseline", action="store_true", help="the code-change scenario without the baseline")
    args = ap.parse_args()
    if args.only_code_change:
        return code_change_only(args)
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
        ep = e2e.endpoints(target)
        if args.warmup:
            # The first-model window: load from the moment the first DAG run registers its
            # model, while each API worker finds it and loads it beside serving (answering
            # 503 at once until it has); reported apart from steady state
            warm, run = first_model_window(target, ep, args.warmup, args.connections, out)
            result["predict_load_warmup"] = warm
            result["first_model_window_p99_ms"] = warm.get("p99_ms")
        else:
            run = e2e.run(target, out=out)
        result["dag_trigger_to_served_prediction_s"] = round(run.dag_seconds, 1)
        result["model_version"] = run.model_version
        result["predict_load"] = wrk_with_cpu(target.project_name, ep.api, ep.pairs[0], args.seconds,
                                              args.connections)
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
    if args.code_change:
        result["code_change"] = code_change.run(args.code_change, with_baseline=not args.skip_baseline, out=out)
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
        print(f"{'first-model window p99 (' + str(args.warmup) + ' s from registration)':48} "
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
    if result.get("code_change"):
        code_change.print_table(result["code_change"])
    print(f"\nJSON: {args.out}")
    return 0


def code_change_only(args) -> int:
    result = {"code_change": code_change.run(args.code_change or 3, with_baseline=not args.skip_baseline,
                                             keep=args.keep),
              "cpus": os.cpu_count()}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    code_change.print_table(result["code_change"])
    print(f"\nJSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
