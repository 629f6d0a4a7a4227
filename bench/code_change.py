"""A one-line code change reaching the running FX stack, ours and the Dockerfile baseline side
by side (`./fx bench-stack --only-code-change`, or as part of `./fx bench-stack`).

Ours: edit the inference API, run `fxstack up` as a user does (a whole process: build what
changed, load it, Compose recreates fastapi, wait until every service is healthy and ready).
Baseline: the same edit in a Dockerfile context, `docker build` (layer cache warm) and
`docker compose up -d fastapi`. Both are timed from the start of the command to the first answer
of the new code through the published port (the OpenAPI document's `info.version`, which the
edit changes) and to the first `POST /predict` 200 after it (the registered model, served by
the new container: the old one is gone by then); ours also to `up`'s return.

The stack runs from a copy of the checkout with its own state (its OCI store hard-linked from
the checkout's, caches shared through FXSTACK_CACHE), so the checkout and its images.env are
never touched.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
APP = "src/fxservices/inference/app.py"
VERSION_LINE = re.compile(r'^(app = FastAPI\(title="FX inference API", version=)"[^"]*"', re.M)


def copy_checkout(dest: Path) -> Path:
    """What `fxstack up` reads: specs, sources, lock and the Compose files (without the
    checkout's own env file and secrets)."""
    dest.mkdir(parents=True)
    for part in ("images", "src", "compose", "pyproject.toml", "poetry.lock"):
        src = ROOT / part
        if src.is_dir():
            shutil.copytree(src, dest / part, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", ".env", "secrets", ".env.*"))
        else:
            shutil.copy(src, dest / part)
    return dest


def seed_state(state: Path, source: Path) -> None:
    """A state of its own that already holds the checkout's images, as a user's state does:
    blobs hard-linked (the store writes new blobs by rename, never in place), index,
    images.env and the registry's record copied."""
    (state / "oci").mkdir(parents=True)
    shutil.copytree(source / "oci" / "blobs", state / "oci" / "blobs", copy_function=os.link)
    # the registry's record of what it holds: without it the first load would copy every
    # layer of every image into a registry of this state's own (the checkout's answers on the
    # same port)
    (state / "registry").mkdir()
    for name in ("oci/index.json", "oci/oci-layout", "images.env", "registry/blob-repos.json"):
        if (source / name).is_file():
            shutil.copy(source / name, state / name)


def set_version(path: Path, version: str) -> None:
    text, n = VERSION_LINE.subn(lambda m: f'{m[1]}"{version}"', path.read_text(), count=1)
    if n != 1:
        raise RuntimeError(f"{path}: no `app = FastAPI(... version=...)` line to change")
    path.write_text(text)


class Watch(threading.Thread):
    """Asks the API every 50 ms on a new connection: when (seconds after `start`) its OpenAPI
    document first showed `version`, and when POST /predict first answered 200 after that."""

    def __init__(self, api: str, pair: str, version: str, start: float, limit: float = 120):
        super().__init__(daemon=True)
        self.api, self.pair, self.version, self.start, self.limit = api, pair, version, start, limit
        self.new_code_s: float | None = None
        self.predict_s: float | None = None
        self.model_version: str | None = None
        self.statuses: dict[str, int] = {}

    def run(self) -> None:
        while time.monotonic() - self.start < self.limit and self.predict_s is None:
            try:
                if self.new_code_s is None:
                    r = requests.get(f"{self.api}/openapi.json", timeout=2)
                    if r.status_code == 200 and r.json()["info"]["version"] == self.version:
                        self.new_code_s = time.monotonic() - self.start
                        continue
                else:
                    r = requests.post(f"{self.api}/predict", json={"pair": self.pair}, timeout=5)
                    self.statuses[str(r.status_code)] = self.statuses.get(str(r.status_code), 0) + 1
                    if r.status_code == 200:
                        self.predict_s = time.monotonic() - self.start
                        self.model_version = r.json()["model_version"]
                        return
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(0.05)

    def result(self) -> dict:
        return {"new_code_answers_s": _r(self.new_code_s), "predict_200_s": _r(self.predict_s),
                "model_version": self.model_version, "predict_statuses_before": self.statuses}


def _r(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def ours_runs(env: dict, repo: Path, api: str, pair: str, runs: int, out) -> list[dict]:
    fxstack = str(Path(sys.executable).with_name("fxstack"))
    results = []
    for n in range(1, runs + 1):
        version = f"1.0.0+ours.{n}.{time.time_ns()}"
        set_version(repo / APP, version)
        start = time.monotonic()
        watch = Watch(api, pair, version, start)
        watch.start()
        proc = subprocess.run([fxstack, "up"], env=env, capture_output=True, text=True)
        returned = time.monotonic() - start
        if proc.returncode != 0:
            raise RuntimeError(f"fxstack up failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        watch.join()
        row = {"up_returned_s": round(returned, 2), **watch.result(),
               "up_log": [l for l in proc.stdout.splitlines() + proc.stderr.splitlines()
                          if l.strip().startswith("[") or "ready" in l][-12:]}
        print(f"   ours {n}: new code {row['new_code_answers_s']} s, /predict 200 {row['predict_200_s']} s, "
              f"up returned {row['up_returned_s']} s", file=out, flush=True)
        results.append(row)
    return results


def baseline_runs(target, repo: Path, work: Path, api: str, pair: str, runs: int, out) -> dict:
    """The same change the Dockerfile way: the baseline image of fx-fastapi built once (cold,
    untimed) and swapped in; then per run, the edit in its context, `docker build` and
    `docker compose up -d fastapi`, timed to the same answers."""
    import baseline

    from fxstack.image.builder import Builder

    builder = Builder(root=repo, log=lambda m: None)
    ctx = baseline.prepare(builder, repo, work / "baseline", ["fx-fastapi"])["fx-fastapi"]
    tag = "fxbench/fx-fastapi:code-change"
    log = lambda m: print(m, file=out, flush=True)  # noqa: E731
    log("== baseline: docker build of fx-fastapi (cold, untimed)")
    cold = baseline.docker_build(ctx, tag)

    def compose_up(version_tag: str) -> None:
        env = dict(target.process_env(), FX_FASTAPI_IMAGE=version_tag)
        subprocess.run(target.command("up", "-d", "fastapi"), env=env, check=True, capture_output=True)

    first = f"1.0.0+baseline.0.{time.time_ns()}"
    set_version(ctx / APP, first)
    baseline.docker_build(ctx, tag)
    start = time.monotonic()
    watch = Watch(api, pair, first, start, limit=300)
    watch.start()
    compose_up(tag)
    watch.join()
    first_swap = watch.result()
    rows = []
    for n in range(1, runs + 1):
        version = f"1.0.0+baseline.{n}.{time.time_ns()}"
        set_version(ctx / APP, version)
        start = time.monotonic()
        watch = Watch(api, pair, version, start)
        watch.start()
        built = baseline.docker_build(ctx, tag)
        compose_up(tag)
        returned = time.monotonic() - start
        watch.join()
        row = {"docker_build_s": round(built, 2), "build_and_compose_up_returned_s": round(returned, 2),
               **watch.result()}
        log(f"   baseline {n}: new code {row['new_code_answers_s']} s, /predict 200 {row['predict_200_s']} s, "
            f"build {row['docker_build_s']} s")
        rows.append(row)
    return {"cold_build_s": round(cold, 1), "first_swap": first_swap, "runs": rows}


def median_of(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 2) if len(values) == len(rows) and values else None


def run(runs: int = 3, *, with_baseline: bool = True, out=sys.stderr, keep: bool = False) -> dict:
    """The scenario from nothing: its own stack from a copy, the DAG once (a registered model
    to serve), `runs` changes ours, then `runs` the baseline's; removed (volumes too) after."""
    import tempfile

    from fxstack.paths import state_dir
    from fxstack.stack import lifecycle
    from fxstack.stack.docker_state import free_port
    from fxstack.stack.target import Target
    from fxstack.stacks import fx_e2e as e2e
    from fxstack.stacks.fx import FX

    work = Path(tempfile.mkdtemp(prefix="fxbench-code-change-"))
    repo = copy_checkout(work / "repo")
    state = work / "state"
    seed_state(state, state_dir())
    from fxstack.image.builder import cache_dir

    ports = {var: str(free_port()) for var in ("FX_AIRFLOW_PORT", "FX_MLFLOW_PORT", "FX_API_PORT",
                                               "FX_PROMETHEUS_PORT", "FX_GRAFANA_PORT")}
    project, env_file = "fxstack-bench-cc", work / "secrets.env"
    env = dict(os.environ, FXSTACK_ROOT=str(repo), FXSTACK_STATE=str(state),
               FXSTACK_CACHE=str(cache_dir(state_dir())), FXSTACK_PROJECT=project,
               FXSTACK_ENV_FILE=str(env_file), **ports)
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # this process's own calls (e2e, down) see the same checkout and state
    target = Target(FX, project=project, env_file=env_file, overrides=ports, root=repo)
    result: dict = {"runs": runs}
    try:
        print("== code change: the stack from a copy of the checkout, then the DAG once", file=out, flush=True)
        lifecycle.down(target, volumes=True, out=out)
        t0 = time.monotonic()
        proc = subprocess.run([str(Path(sys.executable).with_name("fxstack")), "up"], env=env,
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"fxstack up failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        result["first_up_s"] = round(time.monotonic() - t0, 1)
        e2e_run = e2e.run(target, out=out)
        ep = e2e.endpoints(target)
        result["model_version"] = e2e_run.model_version
        print("== ours: one-line change, `fxstack up`", file=out, flush=True)
        ours = ours_runs(env, repo, ep.api, ep.pairs[0], runs, out)
        result["ours"] = {"runs": ours, **{f"median_{k}": median_of(ours, k) for k in
                                           ("new_code_answers_s", "predict_200_s", "up_returned_s")}}
        if with_baseline:
            base = baseline_runs(target, repo, work, ep.api, ep.pairs[0], runs, out)
            base.update({f"median_{k}": median_of(base["runs"], k) for k in
                         ("new_code_answers_s", "predict_200_s", "docker_build_s",
                          "build_and_compose_up_returned_s")})
            result["baseline"] = base
    finally:
        if not keep:
            try:
                lifecycle.down(target, volumes=True, out=out)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
                if with_baseline:
                    import baseline

                    baseline.remove_images()
                shutil.rmtree(work, ignore_errors=True)
    return result


def print_table(r: dict) -> None:
    o, b = r.get("ours") or {}, r.get("baseline") or {}

    def s(v):
        return "-" if v is None else f"{v:.2f} s"
    print(f"\n{'one-line change -> running stack (median of ' + str(r['runs']) + ')':52} {'ours':>9} {'baseline':>9}  target")
    print(f"{'  first answer of the new code (published port)':52} {s(o.get('median_new_code_answers_s')):>9} "
          f"{s(b.get('median_new_code_answers_s')):>9}")
    print(f"{'  first POST /predict 200 from the new container':52} {s(o.get('median_predict_200_s')):>9} "
          f"{s(b.get('median_predict_200_s')):>9}  < 5 s")
    print(f"{'  `fxstack up` returned (stack healthy and ready)':52} {s(o.get('median_up_returned_s')):>9} "
          f"{s(b.get('median_build_and_compose_up_returned_s')):>9}  (baseline: build + compose up -d)")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-baseline", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "code-change-latest.json"))
    args = ap.parse_args()
    res = run(args.runs, with_baseline=not args.skip_baseline, keep=args.keep)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=2))
    print_table(res)
    print(f"\nJSON: {args.out}")
