"""One stack as one command runs it: the stack's value (StackDef) plus what the caller chose —
variants, project name, env file, secrets directory, extra compose files, overridden settings.

Everything that used to be read from the process environment (which stack, which project,
which env file) is a field here: the CLI reads the user's FXSTACK_* overrides once and builds a
Target, tests build their own, and nothing below changes os.environ.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..envfile import read_env
from ..errors import FxError
from ..stacks.model import StackDef
from . import docker_state as ds
from .compose import compose_dir, explain_compose_error, find_compose, images_env_file, required_vars


@dataclass(frozen=True)
class Target:
    stack: StackDef
    variants: tuple[str, ...] = ()
    project: str | None = None              # default: the stack's
    env_file: Path | None = None            # default: compose/<stack.env_file>
    secrets_dir: Path | None = None         # default: secrets/ next to the env file
    extra_files: tuple[Path, ...] = ()      # local overrides after the stack's own files
    overrides: dict[str, str] = field(default_factory=dict)  # settings that win over the env file
    root: Path | None = None                # the checkout (default: the one this package runs from)
    strict: bool = True                     # False: placeholders for missing required vars (down/logs)
    cli: str = "fxstack"                    # the command the user typed, for the hints we print

    def __post_init__(self) -> None:
        unknown = [v for v in self.variants if v not in self.stack.variants]
        if unknown:
            have = ", ".join(self.stack.variants) or "none"
            raise FxError(f"the {self.stack.name} stack has no variant {', '.join(unknown)}",
                          hint=f"its variants: {have}")

    def but(self, **changes) -> "Target":
        return replace(self, **changes)

    # ------------------------------------------------------------ where things are
    @property
    def project_name(self) -> str:
        return self.project or self.stack.project

    @property
    def compose_dir(self) -> Path:
        return compose_dir(self.root)

    @property
    def env_path(self) -> Path:
        return Path(self.env_file).resolve() if self.env_file else self.compose_dir / self.stack.env_file

    @property
    def secrets_path(self) -> Path:
        return Path(self.secrets_dir).resolve() if self.secrets_dir else self.env_path.parent / "secrets"

    @property
    def files(self) -> list[Path]:
        names = list(self.stack.compose_files)
        for v in self.variants:
            names += self.stack.variants[v].files
        files = [self.compose_dir / n for n in names]
        for extra in self.extra_files:
            path = Path(extra).resolve()
            if not path.is_file():
                raise FxError(f"extra compose file {path} does not exist",
                              hint="fix the path (FXSTACK_COMPOSE_FILES names extra files on the command line)")
            files.append(path)
        return files

    @property
    def profiles(self) -> tuple[str, ...]:
        return tuple(p for v in self.variants for p in self.stack.variants[v].profiles)

    def cmd(self, verb: str, *args: str) -> str:
        """How the user runs `verb` on this stack, e.g. `./fx down bsopt --volumes`."""
        parts = [self.cli, verb] + ([self.stack.name] if self.stack.name != "fx" else []) + list(args)
        return " ".join(parts)

    # ------------------------------------------------------------ settings and Compose
    def settings(self) -> dict[str, str]:
        """What Compose will interpolate with: the env file, then images.env, then the shell, then
        the overrides."""
        values: dict[str, str] = {}
        values.update(read_env(self.env_path))
        values.update(read_env(images_env_file()))
        values.update(os.environ)
        values.update(self.overrides)
        return values

    def command(self, *args: str) -> list[str]:
        cmd = find_compose() + ["-p", self.project_name, "--project-directory", str(self.compose_dir)]
        for f in self.files:
            cmd += ["-f", str(f)]
        for f in (self.env_path, images_env_file()):
            if f.is_file():
                cmd += ["--env-file", str(f)]
        for p in self.profiles:
            cmd += ["--profile", p]
        return cmd + list(args)

    def process_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.overrides)
        env["FXSTACK_SECRETS_DIR"] = str(self.secrets_path)
        if not self.strict:
            have = self.settings()
            for var in required_vars(self.files):
                if not have.get(var):
                    env[var] = "fxstack-placeholder:unset" if var.endswith("_IMAGE") else "unset"
        return env

    def run(self, *args: str, capture: bool = True, check: bool = True, timeout: float | None = None
            ) -> subprocess.CompletedProcess:
        proc = subprocess.run(self.command(*args), capture_output=capture, text=True, env=self.process_env(),
                              timeout=timeout)
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

    # ------------------------------------------------------------ the running stack
    def states(self, dc=None) -> dict[str, ds.ServiceState]:
        return ds.service_states(dc or ds.client(), self.project_name)

    def urls(self, services, dc=None) -> dict[str, str]:
        """Base URLs of the named published services; FxError naming any that is not healthy."""
        states = self.states(dc)
        urls = {}
        for svc in services:
            st = states.get(svc)
            if not st or not st.healthy:
                state = f"{st.state}/{st.health}" if st else "not created"
                raise FxError(f"service {svc} of project {self.project_name} is not running and healthy ({state})",
                              hint=f"bring it up first: `{self.cmd('up')}` (then `{self.cmd('status')}`)")
            urls[svc] = (ds.published_url(st, "") or "").rstrip("/")
        return urls
