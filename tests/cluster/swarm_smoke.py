"""A real three-node Swarm on this machine: the run of the cluster tier (tests/cluster/test_swarm_cluster.py), also by hand:

    .venv/bin/python tests/cluster/swarm_smoke.py [OUT.json]

Three dockerd nodes (tests/cluster/nodes.py), a plain-HTTP registry on their bridge filled by
`fxstack push`, and a stack of two parts: the load balancer exactly as `deploy swarm` renders it
(HAProxy, global, host-mode port, backends from Swarm's DNS) and two replicas of a small HTTP
service named like the API (`fastapi`, endpoint_mode dnsrr). A client at 20 requests/s that
tries the next node when one does not answer runs while the link of a node holding a replica is
cut; the run reports the failed requests and the seconds until Swarm runs the replica elsewhere,
then the failed requests of `wrk` (10 connections) through the balancer during a rolling update
of the service (start-first, one task at a time). Everything is removed at the end, also after a failure."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

from fxstack.cluster import swarm
from fxstack.cluster.model import ImageInfo
from fxstack.cluster.push import push_images
from fxstack.cluster.registry_client import RegistryClient, Target
from fxstack.image.store import BlobStore
from fxstack.paths import state_dir

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings
import nodes  # noqa: E402
from backend import BACKEND  # noqa: E402
from stack_models import model  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_registry(port: int) -> subprocess.Popen:
    d = nodes.BASE / "registry"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.yml").write_text(f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                                  f"    rootdirectory: {d / 'data'}\nhttp:\n  addr: {nodes.NET}.1:{port}\n")
    proc = subprocess.Popen(["docker-registry", "serve", str(d / "config.yml")],
                            stdout=open(d / "log", "ab"), stderr=subprocess.STDOUT)
    nodes.Made().add("pid", str(proc.pid))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection((f"{nodes.NET}.1", port), 0.3).close()
            return proc
        except OSError:
            time.sleep(0.2)
    raise RuntimeError("registry did not start")


def stack_file(base_ref: str, lb_ref: str, out: Path) -> Path:
    full, side = swarm.render(model("fx"), swarm.SwarmOptions(
        endpoint_mode="dnsrr", lb_image=ImageInfo(lb_ref, 0, 0), nfs="unused:/x"))
    lb = full["services"]["lb"]
    lb["networks"] = ["frontend"]
    backend = {
        "image": base_ref, "command": ["python3", "-c", BACKEND.replace("$", "$$")],
        "environment": {"NAME": "{{.Node.Hostname}}-{{.Task.Slot}}"},
        "networks": ["frontend"], "read_only": True, "cap_drop": ["ALL"],
        "healthcheck": {"test": ["CMD", "python3", "-c", "import urllib.request as u; "
                                 "u.urlopen('http://127.0.0.1:8000/health', timeout=2)"],
                        "interval": "1s", "timeout": "2s", "retries": 2, "start_period": "5s"},
        "deploy": {"replicas": 2, "endpoint_mode": "dnsrr",
                   "restart_policy": {"condition": "any", "delay": "0s"},
                   "update_config": {"parallelism": 1, "order": "start-first", "failure_action": "rollback"}}}
    stack = {"version": "3.9", "services": {"lb": lb, "fastapi": backend},
             "networks": {"frontend": {"driver": "overlay"}},
             "configs": {"lb-haproxy-cfg": full["configs"]["lb-haproxy-cfg"]}}
    return swarm.write(stack, side, out)


def main(out_json: str | None) -> dict:
    from fxstack.image.builder import Builder

    result: dict = {}
    Builder().build(["fx-base", "haproxy"])  # what is pushed; a no-op when built already
    store = BlobStore(state_dir() / "oci")
    port = free_port()
    t0 = time.monotonic()
    try:
        ns = nodes.start(3, insecure_registry=f"{nodes.NET}.1:{port}")
        result["nodes_started_s"] = round(time.monotonic() - t0, 1)
        start_registry(port)
        target = Target.parse(f"{nodes.NET}.1:{port}/fx")
        t = time.monotonic()
        pushed = push_images(target, RegistryClient(target.host, insecure=True), store, nodes.BASE / "push",
                             ["fx-base", "haproxy"], print)
        result["push_s"] = round(time.monotonic() - t, 1)
        result["push_mb"] = round(sum(r.bytes_sent for r in pushed) / 1e6, 1)
        nodes.form_swarm(ns)
        refs = {r.image: target.ref(r.image, r.remote_digest) for r in pushed}
        path = stack_file(refs["fx-base"], refs["haproxy"], nodes.BASE / "stack")
        t = time.monotonic()
        ns[0].docker("stack", "deploy", "-c", str(path), "smoke")

        def answers(ip: str) -> str | None:
            try:
                r = requests.get(f"http://{ip}:{swarm.LB_PORT}/", timeout=2)
                return r.text if r.status_code == 200 else None
            except requests.RequestException:
                return None

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not all(answers(n.ip) for n in ns):
            time.sleep(1)
        assert all(answers(n.ip) for n in ns), "the load balancer does not answer on every node"
        result["deploy_to_serving_s"] = round(time.monotonic() - t, 1)

        def placement() -> dict[str, str]:
            out = ns[0].docker("service", "ps", "smoke_fastapi", "--filter", "desired-state=running",
                               "--format", "{{.Node}} {{.CurrentState}}", check=False).stdout
            return {line.split()[0]: line for line in out.splitlines() if " Running" in line}

        # the balancers answer once one replica serves: the other may still be starting, or both
        # may run on one node (a run once found them on one node only); then a forced update
        # places them again, each on the node with the fewest of them
        where = placement()
        deadline = time.monotonic() + 120
        while len(where) < 2 and time.monotonic() < deadline:
            running = ns[0].docker("service", "ps", "smoke_fastapi", "--filter", "desired-state=running",
                                   "--format", "{{.CurrentState}}", check=False).stdout.split("\n")
            if sum(line.startswith("Running") for line in running) >= 2:
                ns[0].docker("service", "update", "--force", "--detach=false", "--quiet", "smoke_fastapi")
            time.sleep(1)
            where = placement()
        result["replicas_on"] = sorted(where)
        victim = next(n for n in ns[1:] if n.name in where)
        # Swarm's view, polled beside the client so the client keeps its pace
        recovered: list[float] = []
        stop = threading.Event()

        def watch(cut_at: list[float]) -> None:
            while not stop.is_set():
                if cut_at and not recovered and len([n for n in placement() if n != victim.name]) >= 2:
                    recovered.append(time.monotonic())
                time.sleep(0.5)

        cut_at: list[float] = []
        watcher = threading.Thread(target=watch, args=(cut_at,), daemon=True)
        watcher.start()
        # the client: 20 requests/s for 40 s, each to the next node in turn, trying the others
        # (a short connect timeout) when one does not answer
        session = requests.Session()
        failures = sent = 0
        t = time.monotonic()
        while sent < 800:
            i = sent
            sent += 1
            if sent == 100:
                nodes.sh("ip", "link", "set", f"{victim.name}h", "down")
                cut_at.append(time.monotonic())
            ok = False
            for k in range(len(ns)):
                try:
                    r = session.get(f"http://{ns[(i + k) % len(ns)].ip}:{swarm.LB_PORT}/", timeout=(0.3, 3))
                    ok = r.status_code == 200
                except requests.RequestException:
                    ok = False
                if ok:
                    break
            failures += not ok
            time.sleep(max(0, t + sent / 20 - time.monotonic()))
        stop.set()
        watcher.join()
        result.update(node_loss_failed_requests=failures, node_loss_requests=sent,
                      node_loss_client_s=round(time.monotonic() - t, 1),
                      replacement_running_s=round(recovered[0] - cut_at[0], 1) if recovered else None)

        # a rolling update (a new task spec: start-first, one at a time) under wrk at 10 connections
        # through the balancer of a node that stayed
        entry = next(n for n in ns if n is not victim).ip
        wrk = subprocess.Popen(["wrk", "-t2", "-c10", "-d25s", f"http://{entry}:{swarm.LB_PORT}/"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        time.sleep(3)
        t = time.monotonic()
        ns[0].docker("service", "update", "--detach=false", "--env-add", "FX_ROLLED=1", "smoke_fastapi")
        result["rolling_update_s"] = round(time.monotonic() - t, 1)
        out = wrk.communicate(timeout=60)[0]
        non2xx = int(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", out)) else 0
        errors = sum(int(x) for x in m.groups()) if (m := re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)) else 0
        total = int(m[1]) if (m := re.search(r"(\d+) requests in", out)) else 0
        result.update(rolling_update_failed_requests=non2xx + errors, rolling_update_requests=total,
                      wrk=out.strip().splitlines()[-6:])
        line = (f"cluster smoke: 3 nodes, replicas on {', '.join(result['replicas_on'])}, node loss "
                f"{failures} failed of {sent} requests, replacement running after {result['replacement_running_s']} s, "
                f"rolling update {non2xx + errors} failed of {total} requests")
        print(line)
        result["line"] = line
        return result
    finally:
        nodes.cleanup()
        left = nodes.leftovers()
        result["leftovers"] = left
        if out_json:
            Path(out_json).write_text(json.dumps(result, indent=1) + "\n")
        print(json.dumps(result, indent=1))
        if left:
            print(f"LEFT BEHIND: {left}", file=sys.stderr)


if __name__ == "__main__":
    if any(a.startswith("-") for a in sys.argv[1:]):
        sys.exit(__doc__)
    main(sys.argv[1] if len(sys.argv) > 1 else None)
