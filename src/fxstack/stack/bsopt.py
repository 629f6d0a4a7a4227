"""`fxstack up|dev bsopt`: the bsopt project (compose/bsopt.yml) through the same harness pieces
as the FX stack: the builder ensures the images, preflight checks ports and images, Compose
starts it, lifecycle.wait_healthy watches it. What differs is kept here: its own secrets file
(compose/bsopt.env), no GPU or Grafana variants, and the development mode.

down, status and logs are the FX commands themselves once projects.select("bsopt") has pointed
the harness at this project.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TextIO

from ..envfile import new_password, read_env
from ..errors import FxError
from . import docker_state as ds
from . import lifecycle, projects
from .compose import Stack, compose_dir, env_file, find_compose

HEADER = """\
# compose/bsopt.env: written by `fxstack up bsopt` on first run with random secrets; never
# overwritten (missing keys are appended). Ports: BSOPT_API_PORT (8300), BSOPT_PRICING_PORT (8301).
"""
DEV_FILE = "bsopt.dev.yml"


def ensure_secrets(path: Path, keys: tuple[str, ...]) -> tuple[bool, list[str]]:
    """Create `path` (mode 600) with a fresh password per key, or append the keys it lacks.
    A value that is there is never changed."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(HEADER + "".join(f"{k}={new_password()}\n" for k in keys))
        return True, list(keys)
    have = read_env(path)
    add = [k for k in keys if not have.get(k)]
    if add:
        text = path.read_text(encoding="utf-8")
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(("" if not text or text.endswith("\n") else "\n") + "# added by fxstack up bsopt\n")
            fh.writelines(f"{k}={new_password()}\n" for k in add)
    return False, add


def _use_dev_file(dev: bool) -> None:
    """Add (or drop) compose/bsopt.dev.yml in FXSTACK_COMPOSE_FILES for this process."""
    dev_path = str(compose_dir() / DEV_FILE)
    extra = [p for p in os.environ.get("FXSTACK_COMPOSE_FILES", "").split(os.pathsep) if p and p != dev_path]
    os.environ["FXSTACK_COMPOSE_FILES"] = os.pathsep.join(([dev_path] if dev else []) + extra)


def up(*, build: bool = True, timeout: float = 600, dev: bool = False,
       out: TextIO | None = None) -> lifecycle.WaitResult:
    out = out or sys.stdout
    projects.select("bsopt")
    _use_dev_file(dev)
    stack = Stack()
    dc = ds.client()
    find_compose()
    print(f"fxstack up bsopt{' (development mode)' if dev else ''}: checking images", file=out, flush=True)
    refs = lifecycle.ensure_images(stack, build, out)
    created, added = ensure_secrets(env_file(), projects.BSOPT.secrets)
    if created:
        print(f"wrote {env_file()} with fresh random secrets (mode 600; never overwritten)", file=out)
    elif added:
        print(f"added missing keys to {env_file()}: {', '.join(added)}", file=out)
    lifecycle.preflight(stack, dc, refs)
    config = stack.config()
    services = list((config.get("services") or {}).keys())
    oneshots = lifecycle.oneshot_services(config)
    print(f"starting {len(services)} services (project {os.environ.get('FXSTACK_PROJECT', 'bsopt')})",
          file=out, flush=True)
    result, _ = lifecycle.compose_up_and_wait(stack, dc, services, oneshots, timeout=timeout, out=out)
    print(f"all {len(services)} services ready in {result.seconds:.1f} s", file=out)
    print_urls(dc, out)
    if dev:
        print(f"\ndevelopment mode: {compose_dir().parent / 'src' / 'bsopt'} is mounted read-only; a saved change "
              "reloads the API, the quote board and neural pricing (uvicorn --reload) and restarts the worker "
              "and the scraper (watchfiles). `fxstack up bsopt` goes back to the built images.", file=out)
    return result


def print_urls(dc, out: TextIO) -> None:
    states = ds.service_states(dc)
    print("\nopen:", file=out)
    for svc, (what, path, creds) in projects.BSOPT.urls.items():
        url = lifecycle.service_url(states.get(svc), path)
        if url:
            print(f"  {what:42} {url}\n  {'':42} login: {creds}", file=out)
    print(f"\nsecrets: {env_file()} (generated on first up; keep it private)", file=out)
    print("stop: fxstack down bsopt   (wipe data too: fxstack down bsopt --volumes)", file=out)


def service_urls(dc=None) -> dict[str, str]:
    """Base URLs of the published bsopt services; FxError naming any that is not healthy."""
    dc = dc or ds.client()
    states = ds.service_states(dc)
    urls = {}
    for svc in projects.BSOPT.urls:
        st = states.get(svc)
        if not st or not st.healthy:
            state = f"{st.state}/{st.health}" if st else "not created"
            raise FxError(f"bsopt service {svc} is not running and healthy ({state})",
                          hint="bring it up first: `fxstack up bsopt` (then `fxstack status bsopt`)")
        urls[svc] = lifecycle.service_url(st, "").rstrip("/")
    return urls
