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
        self.api, self.pair, self.version, self.t0, self.limit = api, pair, version, start, limit
        self.new_code_s: float | None = None
        self.predict_s: float | None = None
        self.model_version: str | None = None
        self.statuses: dict[str, int] = {}

    def run(self) -> None:
        while time.monotonic() - self.t0 < self.limit and self.predict_s is None:
            try:
                if self.new_code_s is None:
                    r = requests.get(f"{self.api}/openapi.json", timeout=2)
                    if r.status_code == 200 and r.json()["info"]["version"] == self.version:
                        self.new_code_s = time.monotonic() - self.t0
                        continue
                else:
                    r = requests.post(f"{self.api}/predict", json={"pair": self.pair}, timeout=5)
                    self.statuses[str(r.status_code)] = self.statuses.get(str(r.status_code), 0) + 1
                    if r.status_code == 200:
                        self.predict_s = time.monotonic() - self.t0
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


def timed_change(api: str, pair: str, version: str, change, out, label: str) -> dict:
    """Run `change()` (which makes `version` live its own way) and time it against a Watch."""
    load_before = os.getloadavg()[0]  # other work on the machine weighs on every side's figures
    start = time.monotonic()
    watch = Watch(api, pair, version, start)
    watch.start()
    row = change() or {}
    row["returned_s"] = round(time.monotonic() - start, 2)
    watch.join()
    row.update(watch.result())
    row["loadavg_1m_before"] = round(load_before, 2)
    print(f"   {label}: new code {row['new_code_answers_s']} s, /predict 200 {row['predict_200_s']} s, "
          f"command returned {row['returned_s']} s", file=out, flush=True)
    return row


class Sides:
    """The three ways of making a code change live, one run each per round:
    - up:       ours as a user runs it, `fxstack up` (build, load, recreate, wait until ready)
    - compose:  ours without the harness's wait: `fxstack build fx-fastapi --load`, then
                `docker compose up -d fastapi`, as the baseline does it (isolates the image and
                the builder from `up`'s checks and readiness wait)
    - baseline: the edit in a Dockerfile context, `docker build`, `docker compose up -d fastapi`"""

    def __init__(self, target, env: dict, repo: Path, work: Path, out):
        self.target, self.env, self.repo, self.out = target, env, repo, out
        self.bin = Path(sys.executable).parent
        self.ctx: Path | None = None
        self.work = work

    def _run(self, cmd: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
        proc = subprocess.run(cmd, env=env or self.env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd[:3])} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def compose_up_fastapi(self, ref: str) -> None:
        self._run(self.target.command("up", "-d", "fastapi"), dict(self.target.process_env(), FX_FASTAPI_IMAGE=ref))

    def up(self, version: str) -> dict:
        set_version(self.repo / APP, version)
        proc = self._run([str(self.bin / "fxstack"), "up"])
        return {"up_log": [l for l in proc.stdout.splitlines() + proc.stderr.splitlines()
                           if l.strip().startswith("[") or "ready" in l][-12:]}

    def compose(self, version: str) -> dict:
        from fxstack.envfile import read_env
        from fxstack.paths import state_dir

        set_version(self.repo / APP, version)
        t0 = time.monotonic()
        self._run([str(self.bin / "fxstack"), "build", "fx-fastapi", "--load"])
        built = time.monotonic() - t0
        self.compose_up_fastapi(read_env(state_dir() / "images.env")["FX_FASTAPI_IMAGE"])
        return {"build_load_s": round(built, 2)}

    def prepare_baseline(self, api: str, pair: str) -> dict:
        """The baseline image of fx-fastapi, built once from nothing (untimed)."""
        import baseline

        from fxstack.image.builder import Builder

        builder = Builder(root=self.repo, log=lambda m: None)
        self.ctx = baseline.prepare(builder, self.repo, self.work / "baseline", ["fx-fastapi"])["fx-fastapi"]
        print("== baseline: docker build of fx-fastapi (cold, untimed)", file=self.out, flush=True)
        return {"cold_build_s": round(baseline.docker_build(self.ctx, BASELINE_TAG), 1)}

    def baseline(self, version: str) -> dict:
        import baseline

        set_version(self.ctx / APP, version)
        built = baseline.docker_build(self.ctx, BASELINE_TAG)
        self.compose_up_fastapi(BASELINE_TAG)
        return {"docker_build_s": round(built, 2)}


BASELINE_TAG = "fxbench/fx-fastapi:code-change"
# what a worker imports before it can load the model, timed in a fresh container of an image
WARM_IMPORTS = ("import time; t = time.perf_counter(); import fxservices.inference.app, feast, mlflow, "
                "mlflow.xgboost, xgboost; print(round(time.perf_counter() - t, 2))")


def read_env_ref() -> str:
    from fxstack.envfile import read_env
    from fxstack.paths import state_dir

    return read_env(state_dir() / "images.env")["FX_FASTAPI_IMAGE"]


def fresh_container_imports(refs: list[str], out, rounds: int = 3) -> dict[str, list[float]]:
    """The worker's imports in a new container of each image, interleaved: tells the image's
    part in a start from the harness's."""
    times: dict[str, list[float]] = {ref: [] for ref in refs}
    for _ in range(rounds):
        for ref in refs:
            proc = subprocess.run(["docker", "run", "--rm", "--read-only", "--tmpfs", "/tmp", "-e",
                                   "PYTHONWARNINGS=ignore", ref, "python3", "-c", WARM_IMPORTS],
                                  capture_output=True, text=True)
            times[ref].append(float(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else None)
    print(f"   imports in a fresh container: {times}", file=out, flush=True)
    return times


def median_of(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return round(statistics.median(values), 2) if len(values) == len(rows) and values else None


def run(runs: int = 3, *, with_baseline: bool = True, out=sys.stderr, keep: bool = False) -> dict:
    """The scenario from nothing: its own stack from a copy, the DAG once (a registered model
    to serve), then `runs` rounds of one change per side (Sides); removed (volumes too) after."""
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
        sides = Sides(target, env, repo, work, out)
        names = ["up", "compose"] + (["baseline"] if with_baseline else [])
        if with_baseline:
            result["baseline_image"] = sides.prepare_baseline(ep.api, ep.pairs[0])
        rows: dict[str, list[dict]] = {name: [] for name in names}
        # interleaved, so that what the machine does meanwhile (Airflow after the DAG run,
        # other work) weighs on every side alike
        for n in range(1, runs + 1):
            for name in names:
                version = f"1.0.0+{name}.{n}.{time.time_ns()}"
                rows[name].append(timed_change(ep.api, ep.pairs[0], version,
                                               lambda: getattr(sides, name)(version), out, f"{name} {n}"))
        result["fresh_container_import_s"] = fresh_container_imports(
            [read_env_ref()] + ([BASELINE_TAG] if with_baseline else []), out)
        for name in names:
            result[name] = {"runs": rows[name], **{f"median_{k}": median_of(rows[name], k) for k in
                                                   ("new_code_answers_s", "predict_200_s", "returned_s")}}
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
    sides = [s for s in ("up", "compose", "baseline") if r.get(s)]
    heads = {"up": "fxstack up", "compose": "build+compose", "baseline": "baseline"}

    def s(v):
        return "-" if v is None else f"{v:.2f} s"
    print(f"\n{'one-line change -> running stack (median of ' + str(r['runs']) + ')':50}"
          + "".join(f"{heads[x]:>15}" for x in sides) + "  target")
    for key, what, target in (("new_code_answers_s", "first answer of the new code", "< 5 s"),
                              ("predict_200_s", "first POST /predict 200 (registered model)", ""),
                              ("returned_s", "the command returned", "")):
        print(f"{'  ' + what:50}" + "".join(f"{s(r[x].get('median_' + key)):>15}" for x in sides) + f"  {target}")


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
