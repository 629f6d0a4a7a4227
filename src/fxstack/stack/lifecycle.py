"""up / down / status / logs: Compose does the work, this module checks first and watches after."""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from ..errors import FxError
from ..poll import TimedOut, poll
from ..workflow.ensure import ensure_images as builder_ensure
from . import docker_state as ds
from . import readiness
from .compose import (
    Stack,
    env_file,
    explain_compose_error,
    find_compose,
    images_env_file,
    project_name,
    published_ports,
    required_vars,
)
from ..envfile import ensure_env_file, read_env
from .secrets import write_secret_files

# What a user opens, per published service: (what it is, path, where the credentials are).
URLS = {
    "airflow-webserver": ("Airflow UI and REST API", "/",
                          "user AIRFLOW_ADMIN_USER, password AIRFLOW_ADMIN_PASSWORD in compose/.env"),
    "mlflow": ("MLflow tracking server + model registry", "/", "no login (reachable on 127.0.0.1 only)"),
    "fastapi": ("Inference API (OpenAPI docs)", "/docs", "no login (reachable on 127.0.0.1 only)"),
    "prometheus": ("Prometheus", "/targets", "no login (reachable on 127.0.0.1 only)"),
    "grafana": ("Grafana dashboards", "/", "user GRAFANA_ADMIN_USER, password GRAFANA_ADMIN_PASSWORD in compose/.env"),
    "fingpt": ("FinGPT sentiment API", "/docs", "no login (reachable on 127.0.0.1 only)"),
}
LOG_LINES = 30


def image_var_to_name(var: str) -> str:
    """FX_AIRFLOW_SCHEDULER_IMAGE -> fx-airflow-scheduler (docs/contracts.md naming)."""
    return var[: -len("_IMAGE")].lower().replace("_", "-")


def image_vars(stack: Stack) -> list[str]:
    names = [v for v in required_vars(stack.files) if v.endswith("_IMAGE")]
    if stack.grafana:
        names.append("GRAFANA_IMAGE")
    return names


def ensure_images(stack: Stack, build: bool, out: TextIO) -> dict[str, str]:
    """Build/load what is missing (the builder's job), then return {VAR: ref} from images.env."""
    # Grafana has no portable build (no Debian package): its ref must come from the Nix path.
    names = [image_var_to_name(v) for v in image_vars(stack) if v != "GRAFANA_IMAGE"]
    if build:
        builder_ensure(names, progress=lambda msg: print(f"  build: {msg}", file=out, flush=True))
    refs = read_env(images_env_file())
    wanted = image_vars(stack)
    absent = [v for v in wanted if not refs.get(v)]
    if absent == ["GRAFANA_IMAGE"]:
        raise FxError(f"{images_env_file()} has no GRAFANA_IMAGE: Grafana has no portable build (Debian 12 "
                      "has no package)",
                      hint="build and load it with the Nix path (`nix build .#grafana`, then load it and add "
                           "GRAFANA_IMAGE=<ref> to .fxstack/images.env), or run `fxstack up` without --grafana")
    if absent:
        raise FxError(f"{images_env_file()} has no image reference for {', '.join(absent)}",
                      hint="run `fxstack build` (it builds, loads and writes .fxstack/images.env)")
    return {v: refs[v] for v in wanted}


def preflight(stack: Stack, dc, refs: dict[str, str]) -> None:
    """Everything that would make `compose up` fail in a confusing way, said plainly first."""
    missing = ds.missing_images(dc, refs)
    if missing:
        lines = "\n".join(f"  {var}={ref}" for var, ref in missing.items())
        raise FxError(f"images named in {images_env_file()} are not in Docker:\n{lines}",
                      hint="run `fxstack build` (it builds what is missing and loads it into Docker)")
    settings = stack.settings()
    conflicts = ds.port_conflicts(published_ports(stack.files, stack.profiles), settings,
                                  *ds.host_ports_by_owner(dc))
    if conflicts:
        raise FxError("published ports are already taken on this machine:\n" + ds.describe_conflicts(conflicts),
                      hint="change the port variable(s) named above in compose/.env, then run `fxstack up` again")


@dataclass
class WaitResult:
    seconds: float
    became_ready: dict[str, float] = field(default_factory=dict)


class ProgressView:
    """One line per service: state, health, elapsed. Redrawn in place on a TTY, else printed on change."""

    def __init__(self, services: list[str], out: TextIO):
        self.services = services
        self.out = out
        self.tty = out.isatty() and os.environ.get("TERM") != "dumb"
        self.drawn = 0
        self.last: dict[str, tuple] = {}

    def render(self, rows: dict[str, tuple[str, str, float, bool]]) -> None:
        width = max(len(s) for s in self.services)
        if self.tty:
            if self.drawn:
                self.out.write(f"\x1b[{self.drawn}F")
            for svc in self.services:
                state, health, elapsed, done = rows[svc]
                mark = "ok " if done else "..."
                self.out.write(f"\x1b[2K  {mark} {svc:<{width}}  {state:<11} {health:<10} {elapsed:6.1f}s\n")
            self.drawn = len(self.services)
            self.out.flush()
        else:
            for svc in self.services:
                state, health, elapsed, done = rows[svc]
                key = (state, health, done)
                if self.last.get(svc) != key:
                    self.last[svc] = key
                    print(f"  [{elapsed:6.1f}s] {svc:<{width}}  {state:<11} {health}" + ("  (ready)" if done else ""),
                          file=self.out, flush=True)


def _health_output(dc, container: str | None) -> str:
    if not container:
        return ""
    try:
        log = (dc.containers.get(container).attrs["State"].get("Health") or {}).get("Log") or []
    except Exception:
        return ""
    if not log:
        return ""
    last = log[-1]
    return f"last health check (exit {last.get('ExitCode')}): {(last.get('Output') or '').strip()[:500]}"


def service_failure(dc, svc: str, st: ds.ServiceState | None, why: str) -> FxError:
    parts = [f"service {svc} {why}"]
    if st and st.container:
        health = _health_output(dc, st.container)
        if health:
            parts.append(health)
        parts.append(f"last {LOG_LINES} log lines of {st.container}:\n" + ds.last_logs(dc, st.container, LOG_LINES))
    return FxError("\n".join(parts), where=svc,
                   hint=f"fix the cause shown in the log above, then `fxstack up` again; "
                        f"more with `fxstack logs {svc}`; `fxstack down` stops the rest")


class HealthWatch:
    """What the wait knows about each service between two looks at Docker: when it became
    ready, since when it has been exited, since when the same process has been running."""

    # a service without a health check counts as ready once the same process has run this long
    NO_HEALTHCHECK_GRACE = 5.0
    # an exited long-running service may be restarted by its policy: fail only after this long
    EXITED_GRACE = 15.0

    def __init__(self, dc, services: list[str], oneshots: set[str], start: float):
        self.dc = dc
        self.services = services
        self.oneshots = oneshots
        self.start = start
        # containers older than the wait may be replaced by Compose: judge them only once it is done
        self.wall_start = time.strftime("%Y-%m-%dT%H:%M:%S",
                                        time.gmtime(time.time() - (time.monotonic() - start)))
        self.ready: dict[str, float] = {}
        self.exited_since: dict[str, float] = {}
        self.running_since: dict[str, tuple] = {}

    def row(self, svc: str, st: ds.ServiceState | None, now: float, compose_running: bool) -> tuple:
        """(state, health, elapsed, done) for the progress view; raises when `svc` has failed."""
        elapsed = now - self.start
        if st is None:
            return ("waiting", "-", self.ready.get(svc, elapsed), False)
        if compose_running and st.created[:19] < self.wall_start:
            return (st.state, "(previous)", elapsed, False)
        if svc in self.oneshots:
            done = self._oneshot_done(svc, st)
            label = f"exited({st.exit_code})" if st.state == "exited" else st.state
            health = "one-shot"
        else:
            done = self._service_done(svc, st, now)
            label, health = st.state, st.health
        if done and svc not in self.ready:
            self.ready[svc] = elapsed
        return (label, health, self.ready.get(svc, elapsed), done)

    def _oneshot_done(self, svc: str, st: ds.ServiceState) -> bool:
        if st.state == "exited" and st.exit_code not in (0, None):
            raise service_failure(self.dc, svc, st, f"(one-shot) exited with code {st.exit_code}")
        return st.state == "exited" and st.exit_code == 0

    def _service_done(self, svc: str, st: ds.ServiceState, now: float) -> bool:
        self._raise_if_failed(svc, st, now)
        if st.healthy and st.health == "none":
            return self._ran_long_enough(svc, st, now)
        return st.healthy

    def _raise_if_failed(self, svc: str, st: ds.ServiceState, now: float) -> None:
        # (an exited container keeps its last health status: only a running one counts)
        if st.health == "unhealthy" and st.state == "running":
            raise service_failure(self.dc, svc, st, "is unhealthy: its health check keeps failing")
        if st.restarts >= 3 and not st.healthy:
            raise service_failure(self.dc, svc, st, f"keeps crashing (restarted {st.restarts} times)")
        if st.state not in ("exited", "dead"):
            self.exited_since.pop(svc, None)
        elif now - self.exited_since.setdefault(svc, now) > self.EXITED_GRACE:
            raise service_failure(self.dc, svc, st, f"exited (code {st.exit_code}) and did not come back")

    def _ran_long_enough(self, svc: str, st: ds.ServiceState, now: float) -> bool:
        seen = self.running_since.get(svc)
        if not seen or seen[0] != st.started_at:
            self.running_since[svc] = seen = (st.started_at, now)
        return now - seen[1] >= self.NO_HEALTHCHECK_GRACE

    def all_ready(self) -> bool:
        return len(self.ready) == len(self.services)

    def not_ready(self) -> list[str]:
        return [s for s in self.services if s not in self.ready]


def compose_failure(dc, services: list[str], states: dict[str, ds.ServiceState], returncode: int,
                    compose_output: list[str] | None) -> FxError:
    """Compose gave up (a dependency failed, a port clash...): name the culprit, with its log."""
    for svc in services:
        st = states.get(svc)
        if st and ((st.health == "unhealthy" and st.state == "running")
                   or (st.state == "exited" and st.exit_code not in (0, None))):
            return service_failure(dc, svc, st, "failed while the stack came up")
    text = "\n".join(compose_output or [])
    return FxError(f"docker-compose up failed (exit {returncode}):\n{text[-3000:]}",
                   hint=explain_compose_error(text) or "see Compose's message above")


def wait_healthy(dc, services: list[str], oneshots: set[str], *, timeout: float, out: TextIO,
                 compose_proc=None, compose_output: list[str] | None = None,
                 clock_start: float | None = None) -> WaitResult:
    """Poll Docker until every service is healthy (one-shots: exited 0). Raise FxError otherwise."""
    start = clock_start if clock_start is not None else time.monotonic()
    watch = HealthWatch(dc, services, oneshots, start)
    view = ProgressView(services, out)
    states: dict[str, ds.ServiceState] = {}

    def compose_running() -> bool:
        return compose_proc is not None and compose_proc.poll() is None

    def look() -> WaitResult | None:
        nonlocal states
        states = ds.service_states(dc)
        now = time.monotonic()
        view.render({svc: watch.row(svc, states.get(svc), now, compose_running()) for svc in services})
        if compose_proc is not None and not compose_running() and compose_proc.returncode != 0:
            raise compose_failure(dc, services, states, compose_proc.returncode, compose_output)
        if watch.all_ready() and not compose_running():
            return WaitResult(seconds=time.monotonic() - start, became_ready=watch.ready)
        return None

    try:
        return poll(look, timeout=max(0.0, timeout - (time.monotonic() - start)), interval=1.0)
    except TimedOut:
        slow = watch.not_ready()
        raise service_failure(dc, slow[0], states.get(slow[0]),
                              f"did not become healthy within {timeout:.0f} s (not ready: {', '.join(slow)})") from None


def wait_services_ready(dc, stack: Stack, healthy: WaitResult, *, start: float, timeout: float,
                        out: TextIO) -> WaitResult:
    """After the containers are healthy: each published service's own readiness (readiness.py)."""
    states = ds.service_states(dc)
    urls = {svc: url.rstrip("/") for svc, st in states.items() if (url := service_url(st, ""))}
    became = readiness.wait_ready(urls, stack.settings(), out=out,
                                  timeout=max(0.0, timeout - (time.monotonic() - start)),
                                  elapsed=lambda: time.monotonic() - start)
    return WaitResult(seconds=time.monotonic() - start, became_ready={**healthy.became_ready, **became})


def oneshot_services(config: dict) -> set[str]:
    """Services without a health check whose restart policy is `no`: they must exit 0."""
    result = set()
    for name, svc in (config.get("services") or {}).items():
        if not svc.get("healthcheck") and svc.get("restart", "no") == "no":
            result.add(name)
    return result


def compose_up_and_wait(stack: Stack, dc, services: list[str], oneshots: set[str], *, timeout: float,
                        out: TextIO) -> tuple[WaitResult, float]:
    """`docker compose up -d`, then wait until every container is healthy (or a failure is
    reported with its logs); returns the result and when Compose was started."""
    start = time.monotonic()
    proc = stack.popen("up", "-d", "--remove-orphans")
    lines: list[str] = []

    def pump():
        for line in proc.stdout:
            lines.append(line.rstrip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        result = wait_healthy(dc, services, oneshots, timeout=timeout, out=out, compose_proc=proc,
                              compose_output=lines, clock_start=start)
    finally:
        if proc.poll() is None and sys.exc_info()[0] is not None:
            proc.terminate()
        reader.join(timeout=5)
    return result, start


def up(*, gpu: bool = False, grafana: bool = False, build: bool = True, timeout: float = 900,
       out: TextIO | None = None) -> WaitResult:
    out = out or sys.stdout
    stack = Stack(gpu=gpu, grafana=grafana)
    dc = ds.client()
    find_compose()
    print("fxstack up: checking images", file=out, flush=True)
    refs = ensure_images(stack, build, out)
    created, added = ensure_env_file(env_file())
    if created:
        print(f"wrote {env_file()} with fresh random secrets (mode 600; never overwritten)", file=out)
    elif added:
        print(f"added missing keys to {env_file()}: {', '.join(added)}", file=out)
    preflight(stack, dc, refs)
    write_secret_files(stack, dc, out)  # Compose `secrets:` files, derived from compose/.env
    config = stack.config()
    services = list((config.get("services") or {}).keys())
    oneshots = oneshot_services(config)
    print(f"starting {len(services)} services (project {os.environ.get('FXSTACK_PROJECT', 'fxstack')})",
          file=out, flush=True)
    result, start = compose_up_and_wait(stack, dc, services, oneshots, timeout=timeout, out=out)
    print(f"all {len(services)} containers healthy in {result.seconds:.1f} s; asking each service", file=out)
    result = wait_services_ready(dc, stack, result, start=start, timeout=timeout, out=out)
    print(f"all {len(services)} services ready in {result.seconds:.1f} s", file=out)
    print_urls(stack, dc, out)
    return result


def print_urls(stack: Stack, dc, out: TextIO) -> None:
    states = ds.service_states(dc)
    print("\nopen:", file=out)
    for svc, (what, path, creds) in URLS.items():
        url = service_url(states.get(svc), path)
        if url:
            print(f"  {what:42} {url}\n  {'':42} login: {creds}", file=out)
    print(f"\ncredentials: {env_file()} (generated on first up; keep it private)", file=out)
    print("stop: fxstack down   (wipe data too: fxstack down --volumes)", file=out)


def service_url(st: ds.ServiceState | None, path: str = "/") -> str | None:
    if not st:
        return None
    for bindings in st.ports.values():
        for b in bindings or []:
            if b.get("HostPort"):
                return f"http://{b.get('HostIp') or '127.0.0.1'}:{b['HostPort']}{path}"
    return None


def down(*, volumes: bool = False, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    ds.client()
    # Both profiles and the GPU file when it can be interpolated, so nothing of ours is left behind;
    # --remove-orphans catches the rest (e.g. fingpt when the GPU image ref is gone).
    stack = Stack(grafana=True, strict=False, gpu=bool(read_env(images_env_file()).get("FX_FINGPT_IMAGE")))
    args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
    proc = stack.run(*args, capture=False, check=False)
    if proc.returncode != 0:
        raise FxError(f"docker-compose down failed (exit {proc.returncode})", hint="see Compose's message above")
    print("stack stopped" + (" and its volumes removed" if volumes else " (volumes kept; --volumes wipes them)"),
          file=out)


def status(*, out: TextIO | None = None) -> list[dict]:
    out = out or sys.stdout
    dc = ds.client()
    states = ds.service_states(dc)
    rows = []
    for svc in sorted(states):
        st = states[svc]
        path = URLS.get(svc, ("", "/", ""))[1]
        rows.append({"service": svc, "state": st.state + (f"({st.exit_code})" if st.exit_code is not None else ""),
                     "health": st.health, "url": service_url(st, path) or "-"})
    if not rows:
        print(f"the stack is not running (no containers in project {project_name()}): `fxstack up` starts it",
              file=out)
        return rows
    width = max(len(r["service"]) for r in rows)
    print(f"{'SERVICE':<{width}}  {'STATE':<11} {'HEALTH':<10} URL", file=out)
    for r in rows:
        print(f"{r['service']:<{width}}  {r['state']:<11} {r['health']:<10} {r['url']}", file=out)
    return rows


def logs(service: str | None, *, follow: bool = False, tail: int = 100) -> int:
    ds.client()
    stack = Stack(grafana=True, strict=False)
    args = ["logs", "--tail", str(tail)] + (["--follow"] if follow else [])
    if service:
        known = stack.services()
        if service not in known:
            raise FxError(f"no service named {service!r}", hint=f"services: {', '.join(known)}")
        args.append(service)
    return stack.run(*args, capture=False, check=False).returncode
