"""up / down / status / logs / test for any stack (a Target: a StackDef plus the caller's
choices). Compose does the work; this module checks first and watches after."""

from __future__ import annotations

import os
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from ..envfile import ensure_env_file, read_env
from ..errors import FxError
from ..poll import TimedOut, poll
from ..workflow.ensure import build_and_load, missing_sboms, write_sboms
from . import custody, readiness, settled
from . import docker_state as ds
from .compose import explain_compose_error, find_compose, images_env_file, published_ports, required_vars
from .secrets import write_secret_files
from .target import Target

LOG_LINES = 30


def image_var_to_name(var: str) -> str:
    """FX_AIRFLOW_SCHEDULER_IMAGE -> fx-airflow-scheduler (docs/contracts.md naming)."""
    return var[: -len("_IMAGE")].lower().replace("_", "-")


def nix_only_images(target: Target) -> list[str]:
    return [v for name in target.variants for v in target.stack.variants[name].nix_only_images]


def image_vars(target: Target) -> list[str]:
    names = [v for v in required_vars(target.files) if v.endswith("_IMAGE")]
    return names + [v for v in nix_only_images(target) if v not in names]


def ensure_images(target: Target, build: bool, out: TextIO) -> tuple[dict[str, str], Callable[[], None] | None]:
    """Build/load what is missing (the builder's job), then return {VAR: ref} from images.env,
    and what writes the SBOMs the new images lack (None if none): `up` calls it once the stack
    is ready. After a code change that is a second of CPU (poetry.lock parsed, the dpkg
    database read out of the root filesystem layer, the CycloneDX serialiser) which, before
    Compose or beside the starting container, delayed the new API's first answer."""
    nix_only = nix_only_images(target)
    names = [image_var_to_name(v) for v in image_vars(target) if v not in nix_only]
    sboms = None
    if build:
        builder, images, _ = build_and_load(names, lambda msg: print(f"  build: {msg}", file=out, flush=True))
        if missing := missing_sboms(builder, images):
            sboms = lambda: write_sboms(builder, missing)  # noqa: E731
    refs = read_env(images_env_file())
    wanted = image_vars(target)
    absent = [v for v in wanted if not refs.get(v)]
    if absent and set(absent) <= set(nix_only):
        names = ", ".join(image_var_to_name(v) for v in absent)
        raise FxError(f"{images_env_file()} has no {', '.join(absent)}: {names} has no portable build "
                      "(Debian 12 has no package)",
                      hint=f"build and load it with the Nix path (`nix build .#{image_var_to_name(absent[0])}`, "
                           f"then load it and add {absent[0]}=<ref> to .fxstack/images.env), or leave out the "
                           "variant that needs it")
    if absent:
        raise FxError(f"{images_env_file()} has no image reference for {', '.join(absent)}",
                      hint=f"run `{target.cli} build` (it builds, loads and writes .fxstack/images.env)")
    return {v: refs[v] for v in wanted}, sboms


def preflight(target: Target, dc, refs: dict[str, str]) -> None:
    """Everything that would make `compose up` fail in a confusing way, said plainly first."""
    missing = ds.missing_images(dc, refs)
    if missing:
        lines = "\n".join(f"  {var}={ref}" for var, ref in missing.items())
        raise FxError(f"images named in {images_env_file()} are not in Docker:\n{lines}",
                      hint=f"run `{target.cli} build` (it builds what is missing and loads it into Docker)")
    settings = target.settings()
    conflicts = ds.port_conflicts(published_ports(target.files, target.profiles), settings,
                                  *ds.host_ports_by_owner(dc, target.project_name))
    if conflicts:
        raise FxError("published ports are already taken on this machine:\n" + ds.describe_conflicts(conflicts),
                      hint=f"change the port variable(s) named above in {target.env_path}, then run "
                           f"`{target.cmd('up')}` again")


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


def service_failure(dc, target: Target, svc: str, st: ds.ServiceState | None, why: str) -> FxError:
    parts = [f"service {svc} {why}"]
    if st and st.container:
        health = _health_output(dc, st.container)
        if health:
            parts.append(health)
        parts.append(f"last {LOG_LINES} log lines of {st.container}:\n" + ds.last_logs(dc, st.container, LOG_LINES))
    return FxError("\n".join(parts), where=svc,
                   hint=f"fix the cause shown in the log above, then `{target.cmd('up')}` again; "
                        f"more with `{target.cmd('logs', svc)}`; `{target.cmd('down')}` stops the rest")


class HealthWatch:
    """What the wait knows about each service between two looks at Docker: when it became
    ready, since when it has been exited, since when the same process has been running."""

    # a service without a health check counts as ready once the same process has run this long
    NO_HEALTHCHECK_GRACE = 5.0
    # an exited long-running service may be restarted by its policy: fail only after this long
    EXITED_GRACE = 15.0

    def __init__(self, dc, target: Target, services: list[str], oneshots: set[str], start: float):
        self.dc = dc
        self.target = target
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
            raise service_failure(self.dc, self.target, svc, st, f"(one-shot) exited with code {st.exit_code}")
        return st.state == "exited" and st.exit_code == 0

    def _service_done(self, svc: str, st: ds.ServiceState, now: float) -> bool:
        self._raise_if_failed(svc, st, now)
        if st.healthy and st.health == "none":
            return self._ran_long_enough(svc, st, now)
        return st.healthy

    def _raise_if_failed(self, svc: str, st: ds.ServiceState, now: float) -> None:
        # (an exited container keeps its last health status: only a running one counts)
        if st.health == "unhealthy" and st.state == "running":
            raise service_failure(self.dc, self.target, svc, st, "is unhealthy: its health check keeps failing")
        if st.restarts >= 3 and not st.healthy:
            raise service_failure(self.dc, self.target, svc, st, f"keeps crashing (restarted {st.restarts} times)")
        if st.state not in ("exited", "dead"):
            self.exited_since.pop(svc, None)
        elif now - self.exited_since.setdefault(svc, now) > self.EXITED_GRACE:
            raise service_failure(self.dc, self.target, svc, st, f"exited (code {st.exit_code}) and did not come back")

    def _ran_long_enough(self, svc: str, st: ds.ServiceState, now: float) -> bool:
        seen = self.running_since.get(svc)
        if not seen or seen[0] != st.started_at:
            self.running_since[svc] = seen = (st.started_at, now)
        return now - seen[1] >= self.NO_HEALTHCHECK_GRACE

    def all_ready(self) -> bool:
        return len(self.ready) == len(self.services)

    def not_ready(self) -> list[str]:
        return [s for s in self.services if s not in self.ready]


def compose_failure(dc, target: Target, services: list[str], states: dict[str, ds.ServiceState], returncode: int,
                    compose_output: list[str] | None) -> FxError:
    """Compose gave up (a dependency failed, a port clash...): name the culprit, with its log."""
    for svc in services:
        st = states.get(svc)
        if st and ((st.health == "unhealthy" and st.state == "running")
                   or (st.state == "exited" and st.exit_code not in (0, None))):
            return service_failure(dc, target, svc, st, "failed while the stack came up")
    text = "\n".join(compose_output or [])
    return FxError(f"docker-compose up failed (exit {returncode}):\n{text[-3000:]}",
                   hint=explain_compose_error(text) or "see Compose's message above")


def wait_healthy(dc, target: Target, services: list[str], oneshots: set[str], *, timeout: float, out: TextIO,
                 compose_proc=None, compose_output: list[str] | None = None,
                 clock_start: float | None = None) -> WaitResult:
    """Poll Docker until every service is healthy (one-shots: exited 0). Raise FxError otherwise."""
    start = clock_start if clock_start is not None else time.monotonic()
    watch = HealthWatch(dc, target, services, oneshots, start)
    view = ProgressView(services, out)
    states: dict[str, ds.ServiceState] = {}

    def compose_running() -> bool:
        return compose_proc is not None and compose_proc.poll() is None

    def look() -> WaitResult | None:
        nonlocal states
        # Once Compose is done, only the services not ready yet are inspected: after a code
        # change that is one container of eleven. Each look was a dozen Engine API calls, and
        # dockerd's work (like this process's) competes with the starting container's: in
        # cgroup terms all containers together weigh as much as dockerd alone.
        # (A service once ready is not looked at again in this wait.)
        waiting = None if compose_running() else set(watch.not_ready())
        fresh = ds.service_states(dc, target.project_name, services=waiting)
        states = fresh if waiting is None else {**{s: st for s, st in states.items() if s not in waiting}, **fresh}
        now = time.monotonic()
        view.render({svc: watch.row(svc, states.get(svc), now, compose_running()) for svc in services})
        if compose_proc is not None and not compose_running() and compose_proc.returncode != 0:
            raise compose_failure(dc, target, services, states, compose_proc.returncode, compose_output)
        if watch.all_ready() and not compose_running():
            return WaitResult(seconds=time.monotonic() - start, became_ready=watch.ready)
        return None

    try:
        # every half second: a look is a dozen Engine API calls; after a code change the wait
        # is for one recreated container, and a second between looks was up to a second late
        return poll(look, timeout=max(0.0, timeout - (time.monotonic() - start)), interval=0.5)
    except TimedOut:
        slow = watch.not_ready()
        raise service_failure(dc, target, slow[0], states.get(slow[0]),
                              f"did not become healthy within {timeout:.0f} s (not ready: {', '.join(slow)})") from None


def wait_services_ready(dc, target: Target, healthy: WaitResult, *, start: float, timeout: float,
                        out: TextIO) -> WaitResult:
    """After the containers are healthy: each published service's own readiness (the stack's probes)."""
    if not target.stack.probes:
        return healthy
    states = target.states(dc)
    urls = {svc: url.rstrip("/") for svc, st in states.items() if (url := ds.published_url(st, ""))}
    became = readiness.wait_ready(urls, target.settings(), out=out,
                                  timeout=max(0.0, timeout - (time.monotonic() - start)),
                                  elapsed=lambda: time.monotonic() - start, probes=target.stack.probes)
    return WaitResult(seconds=time.monotonic() - start, became_ready={**healthy.became_ready, **became})


def oneshot_services(config: dict) -> set[str]:
    """Services without a health check whose restart policy is `no`: they must exit 0."""
    result = set()
    for name, svc in (config.get("services") or {}).items():
        if not svc.get("healthcheck") and svc.get("restart", "no") == "no":
            result.add(name)
    return result


def compose_up_and_wait(target: Target, dc, services: list[str], oneshots: set[str], *, timeout: float,
                        out: TextIO, done: set[str] = frozenset()) -> tuple[WaitResult, float]:
    """`docker compose up -d`, then wait until every container is healthy (or a failure is
    reported with its logs); returns the result and when Compose was started. `done`: services
    Compose has nothing to do for (fxstack.stack.settled), left out of its run, still waited for."""
    start = time.monotonic()
    proc = target.popen("up", "-d", "--remove-orphans", *settled.compose_args(services, oneshots, done))
    lines: list[str] = []

    def pump():
        for line in proc.stdout:
            lines.append(line.rstrip())

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        result = wait_healthy(dc, target, services, oneshots, timeout=timeout, out=out, compose_proc=proc,
                              compose_output=lines, clock_start=start)
    finally:
        if proc.poll() is None and sys.exc_info()[0] is not None:
            proc.terminate()
        reader.join(timeout=5)
    return result, start


def up(target: Target, *, build: bool = True, timeout: float = 900, out: TextIO | None = None) -> WaitResult:
    """Build what is missing, write the env file's missing secrets and the secret files, check
    ports and images, start the stack and wait until every service is healthy and ready."""
    out = out or sys.stdout
    dc = ds.client()
    find_compose()
    variants = f" ({', '.join(target.variants)})" if target.variants else ""
    ensure_secrets(target, out)
    custody.check_before_up(dc, target, out)  # another checkout's stack, data made with other secrets
    print(f"{target.cmd('up')}{variants}: checking images", file=out, flush=True)
    refs, sboms = ensure_images(target, build, out)
    result = _start_and_wait(target, dc, refs, timeout, out)
    if sboms is not None:
        sboms()
    print_urls(target, dc, out)
    return result


def _start_and_wait(target: Target, dc, refs: dict[str, str], timeout: float, out: TextIO) -> WaitResult:
    preflight(target, dc, refs)
    write_secret_files(target, dc, out)  # Compose `secrets:` files, derived from the env file
    config = target.config()
    services = list((config.get("services") or {}).keys())
    oneshots = oneshot_services(config)
    done = settled.settled_in_docker(dc, target, config, services, oneshots)
    changed = [s for s in services if s not in done]
    print(f"starting {len(services)} services (project {target.project_name})"
          + (f"; up to date and running: {len(done)}, Compose starts {', '.join(changed) or 'none'}"
             if done else ""), file=out, flush=True)
    result, start = compose_up_and_wait(target, dc, services, oneshots, timeout=timeout, out=out, done=done)
    if target.stack.probes:
        print(f"all {len(services)} containers healthy in {result.seconds:.1f} s; asking each service", file=out)
        result = wait_services_ready(dc, target, result, start=start, timeout=timeout, out=out)
    print(f"all {len(services)} services ready in {result.seconds:.1f} s", file=out)
    return result


def ensure_secrets(target: Target, out: TextIO) -> None:
    """The env file with every generated key of the stack (missing ones appended, none changed)."""
    path = target.env_path
    created, added = ensure_env_file(path, target.stack.generate(), target.stack.env_header,
                                     plain=set(target.stack.plain_defaults))
    if created:
        print(f"wrote {path} with fresh random secrets (mode 600; never overwritten)", file=out)
    elif added:
        print(f"added missing keys to {path}: {', '.join(added)}", file=out)


def print_urls(target: Target, dc, out: TextIO) -> None:
    states = target.states(dc)
    print("\nopen:", file=out)
    for svc, url in target.stack.urls.items():
        link = ds.published_url(states.get(svc), url.path)
        if link:
            login = url.login.format(env_file=target.env_path)
            print(f"  {url.what:42} {link}\n  {'':42} login: {login}", file=out)
    for name in target.variants:
        print(f"\n{name}: {target.stack.variants[name].help}", file=out)
    print(f"\nsecrets: {target.env_path} (generated on first up; keep it private)", file=out)
    print(f"stop: {target.cmd('down')}   (wipe data too: {target.cmd('down', '--volumes')})", file=out)


def down(target: Target, *, volumes: bool = False, out: TextIO | None = None) -> None:
    """Stop and remove the stack's containers (and with `volumes`, its data)."""
    out = out or sys.stdout
    dc = ds.client()
    other = custody.running_checkout(dc, target)
    # Every variant whose files can be interpolated, so nothing of ours is left behind;
    # --remove-orphans catches the rest (e.g. fingpt when the GPU image ref is gone).
    refs = read_env(images_env_file())
    every = tuple(name for name, v in target.stack.variants.items()
                  if all(refs.get(var) for var in image_vars_of_files(target, v.files)))
    whole = target.but(variants=every, strict=False)
    args = ["down", "--remove-orphans"] + (["--volumes"] if volumes else [])
    proc = whole.run(*args, capture=False, check=False)
    if proc.returncode != 0:
        raise FxError(f"docker-compose down failed (exit {proc.returncode})", hint="see Compose's message above")
    if volumes:
        custody.remove_record(dc, target)
    if other:
        print(f"(project {target.project_name} ran from the checkout {other})", file=out)
    print(f"stack {target.project_name} stopped" + (" and its volumes removed" if volumes else
          f" (volumes kept; `{target.cmd('down', '--volumes')}` wipes them)"), file=out)


def image_vars_of_files(target: Target, files: tuple[str, ...]) -> list[str]:
    """The *_IMAGE variables that the variant's own compose files require."""
    paths = [target.compose_dir / f for f in files]
    return [v for v in required_vars(paths) if v.endswith("_IMAGE")] if paths else []


def status(target: Target, *, out: TextIO | None = None) -> list[dict]:
    out = out or sys.stdout
    dc = ds.client()
    states = target.states(dc)
    rows = []
    for svc in sorted(states):
        st = states[svc]
        url = target.stack.urls.get(svc)
        rows.append({"service": svc, "state": st.state + (f"({st.exit_code})" if st.exit_code is not None else ""),
                     "health": st.health, "url": ds.published_url(st, url.path if url else "/") or "-"})
    if not rows:
        print(f"the {target.stack.name} stack is not running (no containers in project {target.project_name}): "
              f"`{target.cmd('up')}` starts it", file=out)
        return rows
    width = max(len(r["service"]) for r in rows)
    other = custody.running_checkout(dc, target)
    print(f"project {target.project_name}" + (f", running from another checkout: {other} (its env file "
          f"holds its secrets; `cd {other} && ./fx down` stops it)" if other else ""), file=out)
    print(f"{'SERVICE':<{width}}  {'STATE':<11} {'HEALTH':<10} URL", file=out)
    for r in rows:
        print(f"{r['service']:<{width}}  {r['state']:<11} {r['health']:<10} {r['url']}", file=out)
    return rows


def logs(target: Target, service: str | None, *, follow: bool = False, tail: int = 100) -> int:
    ds.client()
    # every variant, so a service of any of them is known (placeholders fill what is not built)
    whole = target.but(variants=tuple(target.stack.variants), strict=False)
    args = ["logs", "--tail", str(tail)] + (["--follow"] if follow else [])
    if service:
        known = whole.services()
        if service not in known:
            raise FxError(f"no service named {service!r} in the {target.stack.name} stack",
                          hint=f"services: {', '.join(known)}")
        args.append(service)
    return whole.run(*args, capture=False, check=False).returncode


def test(target: Target, *, timeout: float = 900, out: TextIO | None = None) -> Any:
    """The stack's own end-to-end run against the running stack."""
    out = out or sys.stdout
    if target.stack.e2e is None:
        raise FxError(f"the {target.stack.name} stack has no end-to-end run")
    custody.refuse_other_checkout(ds.client(), target, f"`{target.cmd('up')}` and `{target.cmd('test')}`")
    return target.stack.e2e(target, out=out, timeout=timeout)
