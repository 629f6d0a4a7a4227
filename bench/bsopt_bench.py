"""`./fx bench-bsopt`: the bsopt project's numbers on this machine, as a table and as JSON under
bench/results/ (<date>-bsopt.json).

Measures: the four images' sizes (and how much of them the FX images already hold), loaded ->
every service healthy, the end-to-end run (`fxstack test bsopt`), POST /price for one option at
50 connections (wrk, after a warm-up), a 10,000-option batch (client wall time, Greeks included),
a scrape of the quote board through Chromium, and how long a saved change takes to be live in
development mode. It brings up its own project (`bsopt-bench`, free ports) from nothing and
removes it with its volumes at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests
from wrk import wrk_post

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ("bsopt-api", "bsopt-neural-pricing", "bsopt-worker", "bsopt-scraper")
TARGETS = {"healthy_s": 60, "end_to_end_s": 90, "price_p50_ms": 10, "price_p99_ms": 50, "batch_10k_ms": 50, "batch_10k_greeks_ms": 50,
           "scrape_s": 3, "dev_reload_s": 2}


def wrk_price(api: str, seconds: int, connections: int) -> dict:
    result = wrk_post(f"{api}/price", {"spot": 100, "strike": 105, "years": 0.5, "rate": 0.03,
                                       "volatility": 0.25, "type": "call"}, seconds, connections)
    result.pop("raw", None)
    return result


def batch_10k(api: str, greeks: bool, repeats: int = 20) -> dict:
    import random

    rnd = random.Random(0)
    body = json.dumps({"spot": [rnd.uniform(50, 150) for _ in range(10_000)], "strike": 100, "years": 0.5,
                       "rate": 0.03, "volatility": 0.25, "type": ["call", "put"] * 5000,
                       "greeks": greeks}).encode()
    session = requests.Session()
    walls = []
    for _ in range(repeats + 3):
        t0 = time.perf_counter()
        r = session.post(f"{api}/price", data=body, headers={"content-type": "application/json"}, timeout=30)
        walls.append(time.perf_counter() - t0)
        assert r.status_code == 200 and r.json()["count"] == 10_000, r.text[:300]
    walls = walls[3:]
    return {"median_ms": 1000 * statistics.median(walls), "min_ms": 1000 * min(walls),
            "body_bytes": len(body), "repeats": repeats}


def scrapes(api: str, n: int = 3) -> list[float]:
    out = []
    for _ in range(n):
        sid = requests.post(f"{api}/scrapes", timeout=10).json()["id"]
        while (s := requests.get(f"{api}/scrapes/{sid}", timeout=10).json())["state"] not in ("done", "failed"):
            time.sleep(0.1)
        out.append(s["seconds"])
    return out


def dev_reload(target, n: int = 3) -> list[float]:
    """Development mode from a copy of the checkout: edit /health, time until it is served."""
    from fxstack.stack import lifecycle

    copy = Path(tempfile.mkdtemp(prefix="bsopt-dev-"))
    shutil.copytree(ROOT / "compose", copy / "compose", ignore=shutil.ignore_patterns("*.env", "secrets"))
    for package in ("bsopt", "servicekit"):  # what compose/bsopt.dev.yml mounts
        shutil.copytree(ROOT / "src" / package, copy / "src" / package, ignore=shutil.ignore_patterns("__pycache__"))
    dev = target.but(root=copy, variants=("dev",))
    # the copy is another checkout: its up refuses while this checkout's containers run
    lifecycle.down(target, out=sys.stderr)
    lifecycle.up(dev, build=False, timeout=300, out=sys.stderr)
    api = dev.urls(["api"])["api"]
    main = copy / "src" / "bsopt" / "api" / "main.py"
    original = main.read_text()
    out = []
    for i in range(n):
        time.sleep(1.0)   # let the previous reload settle
        # the status value, not an extra field: /health's response model keeps only `status`
        main.write_text(original.replace('return {"status": "ok"}', f'return {{"status": "ok-edit-{i}"}}'))
        t0 = time.monotonic()
        while True:
            try:
                if requests.get(f"{api}/health", timeout=2).json().get("status") == f"ok-edit-{i}":
                    break
            except requests.RequestException:
                pass
            if time.monotonic() - t0 > 60:
                raise RuntimeError("dev mode: change not live after 60 s")
            time.sleep(0.02)
        out.append(time.monotonic() - t0)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=20, help="wrk duration (default 20)")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--keep", action="store_true", help="leave the bench project running")
    args = parser.parse_args()

    from fxstack.stack import lifecycle
    from fxstack.stack.docker_state import free_port
    from fxstack.stack.target import Target
    from fxstack.stacks.bsopt import BSOPT
    from fxstack.workflow.ensure import ensure_images

    target = Target(BSOPT, project=os.environ.get("FXSTACK_PROJECT") or "bsopt-bench",
                    env_file=Path(tempfile.mkdtemp(prefix="bsopt-bench-")) / "bsopt.env",
                    overrides={"BSOPT_API_PORT": str(free_port()), "BSOPT_PRICING_PORT": str(free_port())})
    ensure_images(list(IMAGES) + ["postgres", "redis"], progress=lambda m: print(m, file=sys.stderr))
    # sizes and sharing from the builder's own manifests (a no-op build when nothing changed)
    from fxstack.image.builder import Builder

    built = {im.name: im for im in Builder(log=lambda m: None).build()}
    layer_size = {l.digest: l.size for im in built.values() for l in im.layers}
    bsopt_layers = {l.digest for n in IMAGES for l in built[n].layers}
    fx_layers = {l.digest for n, im in built.items() if not n.startswith("bsopt-") for l in im.layers}
    result: dict = {"when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "image_bytes": {n: built[n].size for n in IMAGES},
                    "bsopt_unique_bytes": sum(layer_size[d] for d in bsopt_layers),
                    "bsopt_bytes_already_in_fx_images": sum(layer_size[d] for d in bsopt_layers & fx_layers),
                    "bsopt_layers": len(bsopt_layers), "bsopt_layers_shared_with_fx": len(bsopt_layers & fx_layers),
                    "cores": os.cpu_count()}
    try:
        lifecycle.down(target, volumes=True, out=sys.stderr)
        up = lifecycle.up(target, build=False, timeout=600, out=sys.stderr)
        result["healthy_s"] = up.seconds
        result["per_service_ready_s"] = {k: round(v, 1) for k, v in up.became_ready.items()}
        e2e = lifecycle.test(target, out=sys.stderr)
        result.update(end_to_end_s=e2e["end_to_end_s"], e2e_scrape_s=e2e["scrape_s"],
                      train_to_served_s=e2e["train_to_served_s"])
        api = target.urls(["api"])["api"]
        if args.warmup:
            wrk_price(api, args.warmup, args.connections)
        result["price_load"] = wrk_price(api, args.seconds, args.connections)
        result["price_p50_ms"] = result["price_load"].get("p50_ms")
        result["price_p99_ms"] = result["price_load"].get("p99_ms")
        result["batch_10k"] = batch_10k(api, greeks=False)
        result["batch_10k_ms"] = result["batch_10k"]["median_ms"]
        result["batch_10k_greeks"] = batch_10k(api, greeks=True)
        result["batch_10k_greeks_ms"] = result["batch_10k_greeks"]["median_ms"]
        result["scrapes_s"] = scrapes(api)
        result["scrape_s"] = statistics.median(result["scrapes_s"])
        result["dev_reloads_s"] = dev_reload(target)
        result["dev_reload_s"] = statistics.median(result["dev_reloads_s"])
    finally:
        if not args.keep:
            lifecycle.down(target, volumes=True, out=sys.stderr)
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{time.strftime('%Y-%m-%d')}-bsopt.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")

    print(f"\n{'measure':52} {'value':>12}  target")
    for name in IMAGES:
        print(f"{'image ' + name:52} {result['image_bytes'][name] / 1e6:>10.1f}MB")
    print(f"{'four bsopt images, unique bytes':52} {result['bsopt_unique_bytes'] / 1e6:>10.1f}MB")
    print(f"{'  of which the FX images already hold':52} {result['bsopt_bytes_already_in_fx_images'] / 1e6:>10.1f}MB"
          f"  ({result['bsopt_layers_shared_with_fx']} of {result['bsopt_layers']} layers)")
    rows = (("healthy_s", "loaded -> all services healthy", "s"), ("end_to_end_s", "end to end (fxstack test bsopt)", "s"),
            ("price_p50_ms", f"POST /price p50, {args.connections} connections (wrk)", "ms"),
            ("price_p99_ms", f"POST /price p99, {args.connections} connections (wrk)", "ms"),
            ("batch_10k_ms", "10,000-option batch, prices (client wall)", "ms"),
            ("batch_10k_greeks_ms", "10,000-option batch with 5 Greeks (client wall)", "ms"),
            ("scrape_s", "scrape of the quote board through Chromium", "s"),
            ("dev_reload_s", "dev mode: saved change -> live", "s"))
    for key, label, unit in rows:
        value = result.get(key)
        print(f"{label:52} {value if value is not None else float('nan'):>10.2f}{unit:2}  < {TARGETS[key]} {unit}")
    print(f"{'POST /price requests/s':52} {result['price_load'].get('requests_per_s') or 0:>10.0f}")
    print(f"\nwritten: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
