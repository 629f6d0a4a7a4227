"""`./fx bench-cluster`: the FX stack on a three-node Swarm on this machine, as a table and as JSON
under bench/results/ (<date>-cluster.json).

The run of the cluster tier (tests/cluster/stacks_on_swarm.py: three dockerd in network
namespaces, a registry filled by `fxstack push`, `fxstack deploy swarm fx`), measured: deploy ->
every service healthy on 3 nodes, the node-loss window (failed requests of a client at 20/s
through the balancers, seconds until Swarm runs the lost replicas elsewhere), the push of a
one-line code change of fx-fastapi (bytes, seconds) and the rolling update to it under wrk -c10
(failed requests), then `POST /predict` p50/p99 at 50 connections through the load balancer and,
in the same run, straight to one API replica (its port published on its node for the
measurement): what the balancer costs. The single-host Compose figure of the latest
`./fx bench-stack` JSON is printed beside them (another run: a stack on one host, not these
nodes). Everything is removed at the end.

    ./fx bench-cluster [--seconds 20] [--connections 50]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))
sys.path.insert(0, str(ROOT / "bench"))

import stacks_on_swarm as sos  # noqa: E402
from wrk import wrk_post  # noqa: E402

from fxstack.cluster import swarm  # noqa: E402
from fxstack.cluster.swarm_running import node_addresses, running_nodes  # noqa: E402

DIRECT_PORT = 18000


def latency(seconds: int, connections: int):
    def measure(stack: str, state: dict, result: dict) -> dict:
        ns = sos._nodes()
        via_lb = wrk_post(f"http://{ns[0].ip}:{swarm.LB_PORT}/predict", {"pair": "EUR_USD"}, seconds, connections)
        service = f"{sos.project(stack)}_fastapi"
        # one replica straight: publish its port on its node (host mode) for this measurement only
        swarm.docker("service", "update", "--detach=false", "--quiet", "--update-order", "stop-first", "--publish-add",
                     f"mode=host,target=8000,published={DIRECT_PORT}", service, host=sos.manager())
        sos.wait_healthy(stack, timeout=300)
        node = running_nodes(service, sos.manager())[0]
        direct = wrk_post(f"http://{node_addresses(sos.manager())[node]}:{DIRECT_PORT}/predict", {"pair": "EUR_USD"},
                          seconds, connections)
        for r in (via_lb, direct):
            r.pop("raw", None)
        return {"via_load_balancer": via_lb, "one_replica_direct": direct, "direct_node": node}
    return measure


def single_host_figure() -> dict:
    """The latest `./fx bench-stack` JSON's /predict figure (another run, one host)."""
    files = sorted((ROOT / "bench" / "results").glob("*-stack*.json"))
    for f in reversed(files):
        data = json.loads(f.read_text())
        load = data.get("predict_load") or {}
        if load.get("p50_ms"):
            return {"file": f"bench/results/{f.name}", "p50_ms": load["p50_ms"], "p99_ms": load.get("p99_ms"),
                    "connections": load.get("connections")}
    return {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=int, default=20, help="wrk seconds per latency figure")
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--json", help="result file (default bench/results/<date>-cluster.json)")
    args = ap.parse_args()
    out = Path(args.json or ROOT / "bench" / "results" / f"{time.strftime('%Y-%m-%d')}-cluster.json")
    measure = latency(args.seconds, args.connections)
    failed = None
    try:
        # both stacks, as the cluster tier runs them; the latency figures are the FX API's
        result = sos.main(["fx", "bsopt"], str(out), lambda stack, state, r: measure(stack, state, r)
                          if stack == "fx" else None)
    except Exception as exc:  # the figures measured so far are still worth the table (main wrote them)
        failed = f"{type(exc).__name__}: {exc}"
        result = json.loads(out.read_text()) if out.exists() else {}
        result["failed"] = failed
    fx = result.get("fx") or {}
    loss, roll, extra = fx.get("node_loss", {}), fx.get("rolling_update", {}), fx.get("extra", {})
    figures = {
        "deploy_to_healthy_s": fx.get("deploy", {}).get("deploy_to_healthy_s"),
        "images_pushed_mb": round(fx.get("deploy", {}).get("push", {}).get("bytes_sent", 0) / 1e6, 1),
        "one_line_change_push_bytes": roll.get("push_bytes"), "one_line_change_push_s": roll.get("push_s"),
        "node_loss_failed": (loss.get("client") or {}).get("failed"),
        "node_loss_requests": (loss.get("client") or {}).get("sent"),
        "node_loss_replacement_running_s": loss.get("replacement_running_s"),
        "rolling_update_failed": roll.get("failed"), "rolling_update_requests": roll.get("requests"),
        "predict_via_lb": {k: (extra.get("via_load_balancer") or {}).get(k) for k in ("p50_ms", "p99_ms", "requests_per_s")},
        "predict_one_replica_direct": {k: (extra.get("one_replica_direct") or {}).get(k)
                                       for k in ("p50_ms", "p99_ms", "requests_per_s")},
        "predict_single_host_compose": single_host_figure(),
    }
    result["figures"] = figures
    out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    f = figures
    rows = [
        ("deploy -> every service healthy on 3 nodes", f"{f['deploy_to_healthy_s']} s"),
        ("images pushed (cold registry)", f"{f['images_pushed_mb']} MB"),
        ("push of a one-line change of fx-fastapi", f"{(f['one_line_change_push_bytes'] or 0) / 1e3:.1f} kB, "
                                                   f"{f['one_line_change_push_s']} s"),
        ("node loss: failed requests (client at 20/s)", f"{f['node_loss_failed']} of {f['node_loss_requests']}"),
        ("node loss: lost replicas running elsewhere", f"{f['node_loss_replacement_running_s']} s"),
        ("rolling update under wrk -c10: failed", f"{f['rolling_update_failed']} of {f['rolling_update_requests']}"),
        (f"POST /predict p50/p99, {args.connections} conn, via balancer",
         f"{f['predict_via_lb']['p50_ms']} / {f['predict_via_lb']['p99_ms']} ms"),
        ("  same run, one replica straight (no balancer)",
         f"{f['predict_one_replica_direct']['p50_ms']} / {f['predict_one_replica_direct']['p99_ms']} ms"),
        ("  single host (Compose, latest bench-stack)",
         f"{f['predict_single_host_compose'].get('p50_ms')} / {f['predict_single_host_compose'].get('p99_ms')} ms"),
    ]
    for label, value in rows:
        print(f"{label:52} {value}")
    for stack in ("fx", "bsopt"):
        if (result.get(stack) or {}).get("line"):
            print(result[stack]["line"])
    print(f"written {out.relative_to(ROOT)}")
    if failed:
        print(f"FAILED: {failed}")
    return 0 if result.get("leftovers") == [] and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
