"""The real stacks on a real three-node Swarm: the cluster tier's second run
(tests/cluster/test_stacks_on_swarm.py) and the cluster benchmark's (bench/cluster_bench.py).

    .venv/bin/python tests/cluster/stacks_on_swarm.py [fx] [bsopt] [--json OUT]   # the whole run
    .venv/bin/python tests/cluster/stacks_on_swarm.py step up|e2e|loss|roll|down STACK  # by hand, nodes kept
    .venv/bin/python tests/cluster/stacks_on_swarm.py repeat STACK N [SECONDS]  # N deploys on empty volumes
    .venv/bin/python tests/cluster/nodes.py cleanup

Three dockerd nodes (nodes.py) and a plain-HTTP registry on their bridge that `fxstack push` fills
with the stack's images; `fxstack deploy swarm` (the real CLI) labels the first node (the manager)
for the stateful services, binds the shared volumes under a directory of the host filesystem every
node sees (`--shared-path`: this kernel has no NFS) and publishes the UIs the end-to-end run reads
on ports clear of the load balancer's. Then, per stack: every service healthy, the stack's own
end-to-end run (stacks/fx_e2e.py, stacks/bsopt_e2e.py) through the load balancer, the link of a
node with an API replica (and, for FX, an Airflow worker) cut under a client at 20 requests/s
through the balancers, the end-to-end run again with the registered model and Airflow's run
history kept; for FX a rolling update of fx-fastapi to a new digest (a one-line code change, built
and pushed) under `wrk -c10`. Everything is removed at the end, also after a failure."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from fxstack.cluster import swarm
from fxstack.cluster.model import image_name
from fxstack.cluster.push import push_images
from fxstack.cluster.registry_client import RegistryClient, Target
from fxstack.cluster.stackconfig import cluster_target, image_vars
from fxstack.cluster.swarm_running import SwarmRunning, running_nodes
from fxstack.image.store import BlobStore
from fxstack.paths import repo_root, state_dir
from fxstack.stacks import registry

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a script: its siblings
import nodes  # noqa: E402
from swarm_smoke import free_port, start_registry  # noqa: E402

STATE = nodes.BASE / "run.json"
# outside nodes.BASE, which the cleanup removes
LOGS = state_dir() / "cluster-logs"
SHARED = nodes.BASE / "shared"
# the UIs the end-to-end runs read, on node ports clear of the balancer's 8080
PUBLISH = {"fx": ("airflow-webserver=18080", "mlflow=15000", "prometheus=19090"),
           "bsopt": ("neural-pricing=18001",)}
# the replicated services a lost node must have a task of (besides the API)
LOSS_ALSO = {"fx": ("airflow-worker",), "bsopt": ()}
# ... and those it should have one of: bsopt's scraper, whose wait on Redis a lost node once left
# holding the next scrape request (bsopt.common.scrape_requests)
LOSS_PREFERRED = {"fx": (), "bsopt": ("scraper",)}
RESCHEDULES = 3
CHANGED_FILE = "src/fxservices/inference/__init__.py"  # the one-line change of the rolling update


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _nodes() -> list[nodes.Node]:
    return [nodes.Node(f"fxc{i}", i) for i in (1, 2, 3)]


def _state() -> dict:
    return json.loads(STATE.read_text()) if STATE.exists() else {}


def _save(state: dict) -> None:
    STATE.write_text(json.dumps(state, indent=1))


def stack_images(stack: str) -> list[str]:
    target = cluster_target(stack, image_vars())
    names = {image_name(s["image"]) for s in (target.config().get("services") or {}).values()}
    return sorted(names | {"haproxy"})


def cluster_up() -> dict:
    """Nodes, registry, Swarm (no stack yet)."""
    port = free_port()
    t0 = time.monotonic()
    # bsopt's scraper keeps Chromium's sandbox under compose/seccomp/chromium.json (Docker's
    # default profile plus the namespace calls): on Swarm that is the nodes' own default profile
    ns = nodes.start(3, insecure_registry=f"{nodes.NET}.1:{port}",
                     seccomp_profile=str(repo_root() / "compose" / "seccomp" / "chromium.json"))
    start_registry(port)
    nodes.form_swarm(ns)
    state = {"registry": f"{nodes.NET}.1:{port}/fx", "nodes_s": round(time.monotonic() - t0, 1)}
    _save(state)
    log(f"three nodes in one Swarm, registry {state['registry']} ({state['nodes_s']} s)")
    return state


def push(stack: str, state: dict, store: BlobStore | None = None, images: list[str] | None = None) -> dict:
    target = Target.parse(state["registry"])
    t = time.monotonic()
    pushed = push_images(target, RegistryClient(target.host, insecure=True), store or BlobStore(state_dir() / "oci"),
                         nodes.BASE / "push", images or stack_images(stack), lambda m: None)
    out = {"images": len(pushed), "bytes_sent": sum(r.bytes_sent for r in pushed),
           "seconds": round(time.monotonic() - t, 1),
           "refs": {r.image: target.ref(r.image, r.remote_digest) for r in pushed}}
    log(f"pushed {out['images']} images of {stack}: {out['bytes_sent'] / 1e6:.1f} MB in {out['seconds']} s")
    return out


def env_file(stack: str) -> Path:
    return nodes.BASE / "env" / stack / registry.get(stack).env_file


def cli(*args: str, timeout: float = 300) -> str:
    proc = subprocess.run([sys.executable, "-m", "fxstack.cli", *args], capture_output=True, text=True,
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"fxstack {' '.join(args)}: {proc.stderr.strip()[-2000:]}")
    return proc.stdout + proc.stderr


def project(stack: str) -> str:
    return registry.get(stack).project


def manager() -> str:
    return _nodes()[0].sock


def services_state(stack: str) -> dict[str, str]:
    out = swarm.docker("stack", "services", project(stack), "--format", "{{.Name}}\t{{.Replicas}}",
                       host=manager()).stdout
    return dict(line.split("\t") for line in out.splitlines() if "\t" in line)


def jobs(stack: str) -> set[str]:
    config = cluster_target(stack, image_vars()).config()
    return {f"{project(stack)}_{n}" for n, s in config["services"].items() if s.get("restart") == "no"}


def ready_nodes() -> set[str]:
    out = swarm.docker("node", "ls", "--format", "{{.Hostname}}\t{{.Status}}", host=manager()).stdout
    return {line.split("\t")[0] for line in out.splitlines() if line.endswith("\tReady")}


def wait_healthy(stack: str, timeout: float = 900) -> float:
    """Until every service runs all its replicas on nodes that are Ready (a task with a health
    check counts once healthy; `docker service ls` still counts the tasks of a node that is Down)
    and every job completed."""
    t = time.monotonic()
    done_jobs = jobs(stack)
    pending: list[str] = []
    while time.monotonic() - t < timeout:
        ready = ready_nodes()
        pending = []
        for name, replicas in services_state(stack).items():
            want = int(replicas.partition("/")[2].split()[0])
            tasks = swarm.docker("service", "ps", name, "--format", "{{.Node}}\t{{.DesiredState}}\t{{.CurrentState}}",
                                 host=manager()).stdout.splitlines()
            fields = [line.split("\t") for line in tasks]
            if name in done_jobs:
                if not any(f[2].startswith("Complete") for f in fields):
                    pending.append(f"{name} (job)")
                continue
            running = sum(1 for f in fields if f[0] in ready and f[1] == "Running" and f[2].startswith("Running"))
            if name.endswith(f"_{swarm.LB_SERVICE}"):
                want = len(ready)  # global: one per Ready node
            if running < want or want == 0:
                pending.append(f"{name} {running}/{want}")
        if not pending:
            return round(time.monotonic() - t, 1)
        time.sleep(2)
    raise RuntimeError(f"{stack}: not healthy after {timeout:.0f} s: {pending}\n{task_errors(stack)}")


def task_errors(stack: str) -> str:
    return swarm.docker("stack", "ps", project(stack), "--no-trunc", "--format",
                        "{{.Name}} {{.Node}} {{.CurrentState}} {{.Error}}", host=manager(), check=False).stdout[-4000:]


def deploy(stack: str, state: dict) -> dict:
    from fxstack.workflow.ensure import ensure_images

    # what is pushed is the working tree's build (a no-op when current), so the one-line change
    # of the rolling update differs from it by that line only; images.env (which `deploy swarm`
    # checks against the store) names that build
    ensure_images(stack_images(stack), lambda m: None)
    pushed = push(stack, state)
    t = time.monotonic()
    args = ["deploy", "swarm", stack, "--registry", state["registry"], "--host", manager(),
            "--endpoint-mode", "dnsrr", "--shared-path", str(SHARED), "--stateful-node", "fxc1",
            "--env-file", str(env_file(stack)), "-o", str(nodes.BASE / "stack" / stack)]
    for p in PUBLISH[stack]:
        args += ["--publish", p]
    cli(*args)
    healthy = wait_healthy(stack)
    out = {"push": {k: v for k, v in pushed.items() if k != "refs"}, "deploy_to_healthy_s": round(time.monotonic() - t, 1),
           "tasks_per_node": {n: len(ts) for n, ts in swarm.tasks_per_node(project(stack), manager()).items()}}
    log(f"{stack}: every service healthy {out['deploy_to_healthy_s']} s after deploy ({healthy} s waiting); "
        f"tasks per node {out['tasks_per_node']}")
    state.setdefault(stack, {}).update(deployed=True, refs=pushed["refs"])
    _save(state)
    return out


def running(stack: str, entry_node: str = "fxc1") -> SwarmRunning:
    return SwarmRunning(cluster_target(stack, image_vars(), env_file=env_file(stack)), manager(), entry_node)


def e2e(stack: str) -> dict:
    definition = registry.get(stack)
    out = io.StringIO()
    t = time.monotonic()
    try:
        result = definition.e2e(running(stack), out=out) if definition.e2e else None
    finally:
        sys.stdout.write(out.getvalue())
    log(f"{stack}: end to end passed in {time.monotonic() - t:.1f} s")
    return {"seconds": round(time.monotonic() - t, 1), "result": getattr(result, "__dict__", result)}


def _request(stack: str, session: requests.Session, url: str) -> requests.Response:
    if stack == "fx":
        return session.post(f"{url}/predict", json={"pair": "EUR_USD"}, timeout=(0.3, 5))
    return session.post(f"{url}/price", json={"spot": 100, "strike": 105, "years": 0.5, "rate": 0.03,
                                               "volatility": 0.25, "type": "call"}, timeout=(0.3, 5))


def client_loop(stack: str, entries: list[str], stop: threading.Event, rate: float = 20) -> dict:
    """A client at `rate` requests/s, each to the next node's balancer in turn, trying the others
    (a short connect timeout) when one does not answer: what a client of a cluster does."""
    session = requests.Session()
    sent = failed = 0
    errors: list[str] = []
    t = time.monotonic()
    while not stop.is_set():
        i = sent
        sent += 1
        ok = False
        for k in range(len(entries)):
            try:
                r = _request(stack, session, entries[(i + k) % len(entries)])
                ok = r.status_code == 200
                if not ok:
                    errors.append(f"{r.status_code} {r.text[:120]}")
            except requests.RequestException as exc:
                errors.append(type(exc).__name__)
            if ok:
                break
        failed += not ok
        time.sleep(max(0.0, t + sent / rate - time.monotonic()))
    return {"sent": sent, "failed": failed, "seconds": round(time.monotonic() - t, 1), "errors": errors[-5:]}


def node_loss(stack: str, state: dict, seconds_after: float = 20) -> dict:
    """Cut the link of a node (not the manager, which holds the stateful services) that runs an
    API replica and the other services of LOSS_ALSO, and if Swarm can be brought to it those of
    LOSS_PREFERRED, under the client loop; wait until Swarm runs every lost replica elsewhere and
    the stack is healthy again."""
    entry = swarm.ENTRY[stack][0]
    proj = project(stack)
    wanted = (entry, *LOSS_ALSO[stack])
    preferred = (*wanted, *LOSS_PREFERRED[stack])
    on: dict = {}

    def holding(services) -> list:
        return [n for n in _nodes()[1:] if all(n.name in on[svc] for svc in services)]

    for attempt in range(1 + RESCHEDULES):
        on = {svc: running_nodes(f"{proj}_{svc}", manager()) for svc in preferred}
        if holding(preferred) or attempt == RESCHEDULES:
            break
        # Swarm spreads each service by itself; when no node holds them all, let the scheduler
        # place the others again (it picks the nodes with the fewest of their tasks)
        log(f"{stack}: no node other than the manager runs {', '.join(preferred)} ({on}); rescheduling")
        for svc in preferred[1:]:
            if not holding((entry, svc)):
                swarm.docker("service", "update", "--force", "--detach=false", "--quiet", f"{proj}_{svc}",
                             host=manager())
        wait_healthy(stack, timeout=300)
    candidates = holding(preferred) or holding(wanted)
    if not candidates:
        raise RuntimeError(f"{stack}: no node other than the manager runs a task of each of {wanted}: {on}")
    if not holding(preferred):
        log(f"{stack}: after {RESCHEDULES} reschedules no node runs {', '.join(preferred)}: "
            f"cutting one that runs {', '.join(wanted)}")
    wanted = tuple(svc for svc in preferred if candidates[0].name in on[svc])
    victim = candidates[0]
    ns = _nodes()
    entries = [f"http://{n.ip}:{swarm.LB_PORT}" for n in ns]
    stop = threading.Event()
    result: dict = {}
    client = threading.Thread(target=lambda: result.update(client_loop(stack, entries, stop)), daemon=True)
    client.start()
    time.sleep(5)
    nodes.sh("ip", "link", "set", f"{victim.name}h", "down")
    cut = time.monotonic()
    log(f"{stack}: cut the link of {victim.name} (runs {', '.join(wanted)})")
    replaced = None
    want_counts = {svc: services_state(stack)[f"{proj}_{svc}"].partition("/")[2].split()[0] for svc in wanted}
    while time.monotonic() - cut < 300:
        now = {svc: [n for n in running_nodes(f"{proj}_{svc}", manager()) if n != victim.name] for svc in wanted}
        if all(len(now[svc]) >= int(want_counts[svc]) for svc in wanted):
            replaced = round(time.monotonic() - cut, 1)
            break
        time.sleep(0.5)
    time.sleep(seconds_after)
    stop.set()
    client.join()
    healthy = wait_healthy(stack, timeout=300)
    out = {"victim": victim.name, "ran": {svc: on[svc] for svc in wanted}, "replacement_running_s": replaced,
           "client": result, "healthy_again_s": healthy}
    log(f"{stack}: node loss: {result['failed']} failed of {result['sent']} requests in {result['seconds']} s; "
        f"replacements running after {replaced} s")
    state[stack]["victim"] = victim.name
    _save(state)
    return out


def restore_link(state: dict) -> None:
    for stack in ("fx", "bsopt"):
        victim = (state.get(stack) or {}).get("victim")
        if victim:
            nodes.sh("ip", "link", "set", f"{victim}h", "up", check=False)


def history_kept(stack: str, before: dict) -> dict:
    """FX: the registered model version and the DAG run of the first end-to-end run are still
    there (both live in Postgres, on the manager's volume)."""
    from fxstack.stacks import fx_e2e

    ep = fx_e2e.endpoints(running(stack))
    mv = fx_e2e.serving_version(ep)
    r = requests.get(f"{ep.airflow}/api/v1/dags/{fx_e2e.DAG_ID}/dagRuns/{before['run_id']}", auth=ep.auth, timeout=30)
    run_state = r.json().get("state") if r.status_code == 200 else f"{r.status_code}"
    ok = int(mv["version"]) >= int(before["model_version"]) and run_state == "success"
    if not ok:
        raise RuntimeError(f"fx: history lost: serving version {mv.get('version')} (before "
                           f"{before['model_version']}), run {before['run_id']}: {run_state}")
    return {"model_version_before": before["model_version"], "serving_version_after_loss": str(mv["version"]),
            "first_run": before["run_id"], "first_run_state": run_state}


def changed_fastapi(work: Path) -> tuple[BlobStore, float]:
    """fx-fastapi after a one-line code change, built in a copy of the working tree and a
    hard-linked copy of the state directory (every write there is a rename): the checkout stays
    as it is."""
    root, state = repo_root(), state_dir()
    copy_root, copy_state = work / "repo", work / "state"
    shutil.copytree(root, copy_root, symlinks=True, ignore=shutil.ignore_patterns(
        ".fxstack", ".venv", ".git", "__pycache__", ".schemathesis", "node_modules", "bench"))
    subprocess.run(["cp", "-al", str(state), str(copy_state)], check=True)
    target = copy_root / CHANGED_FILE
    target.write_text(target.read_text() + f"# a one-line change {time.time()}\n")
    env = {**os.environ, "FXSTACK_ROOT": str(copy_root), "FXSTACK_STATE": str(copy_state),
           "FXSTACK_CACHE": str(state / "cache")}
    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "fxstack.cli", "build", "fx-fastapi"], env=env, check=True,
                   capture_output=True)
    return BlobStore(copy_state / "oci"), round(time.monotonic() - t, 1)


def rolling_update(stack: str, state: dict) -> dict:
    """fx-fastapi to a new digest (a one-line code change, built and pushed) under wrk at 10
    connections through a balancer: `docker service update --image`, start-first, one at a time."""
    work = Path(tempfile.mkdtemp(prefix="fxc-roll-", dir=nodes.BASE))
    store, build_s = changed_fastapi(work)
    pushed = push(stack, state, store, ["fx-fastapi"])
    ref = pushed["refs"]["fx-fastapi"]
    old = state[stack]["refs"]["fx-fastapi"]
    assert ref != old, "the one-line change gave the same digest"
    entry = next(n for n in _nodes() if n.name != state[stack].get("victim"))
    url = f"http://{entry.ip}:{swarm.LB_PORT}/predict"
    script = work / "predict.lua"
    script.write_text('wrk.method = "POST"\nwrk.body = \'{"pair": "EUR_USD"}\'\n'
                      'wrk.headers["Content-Type"] = "application/json"\n')
    # wrk runs until the update has converged (SIGINT: it stops and prints its totals)
    wrk = subprocess.Popen(["wrk", "-t2", "-c10", "-d600s", "-s", str(script), url],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    time.sleep(3)
    t = time.monotonic()
    swarm.docker("service", "update", "--detach=false", "--image", ref, f"{project(stack)}_fastapi", host=manager())
    update_s = round(time.monotonic() - t, 1)
    time.sleep(3)
    wrk.send_signal(signal.SIGINT)
    text = wrk.communicate(timeout=60)[0]
    non2xx = int(m[1]) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", text)) else 0
    errors = sum(int(x) for x in m.groups()) if (m := re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)) else 0
    total = int(m[1]) if (m := re.search(r"(\d+) requests in", text)) else 0
    images = swarm.docker("service", "ps", f"{project(stack)}_fastapi", "--filter", "desired-state=running",
                          "--format", "{{.Image}}", host=manager()).stdout.split()
    assert images and all(i == ref for i in images), f"not every replica runs the new digest: {images}"
    state[stack]["refs"]["fx-fastapi"] = ref
    _save(state)
    out = {"rebuild_s": build_s, "push_bytes": pushed["bytes_sent"], "push_s": pushed["seconds"],
           "update_s": update_s, "requests": total, "failed": non2xx + errors, "old": old, "new": ref,
           "wrk": text.strip().splitlines()[-6:]}
    log(f"{stack}: rolling update to {ref.rsplit('@', 1)[1][:19]} in {update_s} s: {out['failed']} failed of {total}")
    shutil.rmtree(work, ignore_errors=True)
    return out


def remove(stack: str) -> dict:
    """`deploy swarm --down`, then until its tasks are gone from every node."""
    cli("deploy", "swarm", stack, "--down", "--host", manager())
    t = time.monotonic()
    while time.monotonic() - t < 120:
        if not any(n.docker("ps", "-q", "--filter", f"label=com.docker.stack.namespace={project(stack)}",
                            check=False).stdout.strip() for n in _nodes()):
            break
        time.sleep(1)
    return {"removed_s": round(time.monotonic() - t, 1)}


def keep_logs(stack: str) -> Path:
    """Every service's log and task list, read through the manager before the cleanup removes the
    nodes: a failure's evidence (a node cut off answers nothing; its tasks' logs are missing)."""
    out = LOGS / f"{stack}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    out.mkdir(parents=True, exist_ok=True)
    ps = swarm.docker("stack", "ps", project(stack), "--no-trunc", host=manager(), check=False)
    (out / "tasks.txt").write_text(ps.stdout + ps.stderr)
    for service in services_state(stack):
        logs = swarm.docker("service", "logs", "--raw", "--timestamps", "--tail", "2000", service,
                            host=manager(), check=False)
        (out / f"{service}.log").write_text(logs.stdout + logs.stderr)
    # what the entry service's readiness says inside each task: the balancers' checks read it,
    # and their log records only the changes between up and down
    service, port, path = swarm.ENTRY[stack]
    probe = (f"import urllib.request, urllib.error\ntry:\n r = urllib.request.urlopen("
             f"'http://127.0.0.1:{port}{path}', timeout=5); print(r.status, r.read().decode())\n"
             "except urllib.error.HTTPError as e: print(e.code, e.read().decode())\n"
             "except Exception as e: print(type(e).__name__, e)")
    with (out / "readiness.txt").open("w") as f:
        for node in _nodes():
            ids = swarm.docker("ps", "-q", "--filter", f"name={project(stack)}_{service}.", host=node.sock,
                               check=False).stdout.split()
            for cid in ids:
                r = swarm.docker("exec", cid, "python3", "-c", probe, host=node.sock, check=False)
                f.write(f"{node.name} {cid}: {(r.stdout + r.stderr).strip()}\n")
    return out


def run_stack(stack: str, state: dict, extra=None) -> dict:
    """The whole run of one stack; `extra(stack, state, result)` runs before the stack goes (the
    benchmark's latency figures)."""
    result: dict = {"deploy": deploy(stack, state)}
    try:
        result["e2e"] = e2e(stack)
        result["node_loss"] = node_loss(stack, state)
        result["e2e_after_loss"] = e2e(stack)
        if stack == "fx":
            result["history"] = history_kept(stack, result["e2e"]["result"])
            result["rolling_update"] = rolling_update(stack, state)
    except Exception:
        try:
            log(f"{stack}: failed; the services' logs are in {keep_logs(stack)}")
        except Exception as exc:  # the failure itself matters more than its logs
            log(f"{stack}: failed, and its logs could not be kept: {exc}")
        raise
    restore_link(state)
    if extra is not None:
        result["extra"] = extra(stack, state, result)
    result["removed"] = remove(stack)
    loss = result["node_loss"]["client"]
    line = (f"cluster {stack}: 3 nodes, end to end passed, node loss {loss['failed']} failed requests in "
            f"{loss['seconds']} s")
    if "rolling_update" in result:
        line += f", rolling update {result['rolling_update']['failed']} failed requests"
    result["line"] = line
    return result


def main(stacks: list[str], out_json: str | None = None, extra=None) -> dict:
    results: dict = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    try:
        state = cluster_up()
        for stack in stacks:
            results[stack] = run_stack(stack, state, extra)
        return results
    finally:
        nodes.cleanup()
        results["leftovers"] = nodes.leftovers()
        if out_json:
            Path(out_json).write_text(json.dumps(results, indent=1, default=str) + "\n")
        for stack in stacks:
            if "line" in (results.get(stack) or {}):
                print(results[stack]["line"])


def wipe_volumes(stack: str) -> None:
    """A removed stack's volumes on every node and under the shared path: the next deploy
    starts empty (no database, no registered model)."""
    for n in _nodes():
        vols = n.docker("volume", "ls", "-q", "--filter", f"label=com.docker.stack.namespace={project(stack)}",
                        check=False).stdout.split()
        deadline = time.monotonic() + 30
        # a volume stays in use for a moment after its task's container is gone
        while vols and n.docker("volume", "rm", "-f", *vols, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{stack}: volumes {vols} on {n.name} still in use after 30 s")
            time.sleep(1)
    for d in SHARED.iterdir() if SHARED.exists() else ():
        shutil.rmtree(d) if d.is_dir() else d.unlink()


def repeat(stack: str, cycles: int, seconds: float = float("inf")) -> list:
    """Deploy on empty volumes, end to end, remove, `cycles` times (or until `seconds` have
    passed): the first-model path (services up before any model or data exists) again and
    again. Stops at the first failure, keeping its logs."""
    results: list = []
    t = time.monotonic()
    try:
        state = cluster_up()
        while len(results) < cycles and time.monotonic() - t < seconds:
            deploy(stack, state)
            try:
                results.append({"passed": True, "seconds": e2e(stack)["seconds"]})
            except Exception as exc:
                results.append({"passed": False, "error": str(exc)[:500], "logs": str(keep_logs(stack))})
            remove(stack)
            wipe_volumes(stack)
            log(f"{stack}: cycle {len(results)}: {results[-1]}")
            if not results[-1]["passed"]:
                break
        return results
    finally:
        nodes.cleanup()
        log(f"{stack}: {sum(r['passed'] for r in results)} of {len(results)} cycles passed; "
            f"left behind: {nodes.leftovers() or 'nothing'}")


def step(name: str, stack: str | None) -> object:
    state = _state()
    if name == "up":
        return cluster_up()
    if name == "deploy":
        return deploy(stack, state)
    if name == "e2e":
        return e2e(stack)
    if name == "loss":
        return node_loss(stack, state)
    if name == "roll":
        return rolling_update(stack, state)
    if name == "rm":
        return remove(stack)
    if name == "down":
        return nodes.cleanup()
    raise SystemExit(__doc__)


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv[:1] == ["repeat"]:
        print(json.dumps(repeat(argv[1], int(argv[2]), float(argv[3]) if len(argv) > 3 else float("inf")), indent=1))
    elif argv[:1] == ["step"]:
        print(json.dumps(step(argv[1], argv[2] if len(argv) > 2 else None), indent=1, default=str))
    else:
        out_json = argv[argv.index("--json") + 1] if "--json" in argv else None
        stacks = [a for a in argv if a in ("fx", "bsopt")] or ["fx", "bsopt"]
        main(stacks, out_json)
