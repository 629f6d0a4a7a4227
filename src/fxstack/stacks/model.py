"""What a stack is, as a value: everything the one lifecycle (fxstack.stack) needs to run it.

This module sits below the harness: it names no Docker or Compose machinery. A stack's own
code (its readiness probes, its end-to-end run) reaches the running stack only through the
`Running` protocol that the harness hands it, so the values can live here and the harness
above them takes any of them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Callable, Mapping, Protocol, TextIO

from ..envfile import new_password


def frozen_map(items: Mapping | None = None) -> Mapping:
    """A read-only mapping, so a frozen StackDef cannot be changed through one of its tables."""
    return MappingProxyType(dict(items or {}))


class Running(Protocol):
    """The running stack as a stack's own code sees it (fxstack.stack.target.Target has it)."""

    @property
    def env_path(self) -> Path: ...

    def settings(self) -> dict[str, str]: ...

    def urls(self, services: list[str] | tuple[str, ...]) -> dict[str, str]:
        """Base URLs (no trailing slash) of the named published services; FxError when one is
        not running and healthy."""
        ...


@dataclass
class Answer:
    """What a readiness probe says about its service."""

    ready: bool
    detail: str


# probe(urls of the published services, the stack's settings) -> Answer
Probe = Callable[[dict[str, str], dict[str, str]], Answer]
# runner(the running stack, *, out, timeout) -> whatever the run measured (printed by `test`)
Runner = Callable[..., Any]


@dataclass(frozen=True)
class Url:
    """A published service a user opens: what it is, the path, and where its login is."""

    what: str
    path: str
    login: str


# The login text of a service that has none: it publishes on 127.0.0.1 only.
NO_LOGIN = "no login (reachable on 127.0.0.1 only)"

@dataclass(frozen=True)
class Variant:
    """An optional part of a stack (`up --gpu`, `up --grafana`, `dev`): extra Compose files,
    profiles, and image variables that only the Nix path builds."""

    help: str
    files: tuple[str, ...] = ()
    profiles: tuple[str, ...] = ()
    nix_only_images: tuple[str, ...] = ()


@dataclass(frozen=True)
class DataVolume:
    """A Compose volume whose data depends on secrets: `bound` ones cannot change under the data
    (a new Fernet key cannot read what the old one encrypted), `healed` ones the service itself
    brings to the current value on start (a role's password)."""

    volume: str
    holds: str
    bound: tuple[str, ...] = ()
    healed: tuple[str, ...] = ()


@dataclass(frozen=True)
class StackDef:
    name: str
    title: str
    project: str                              # Compose project name
    compose_files: tuple[str, ...]            # in compose/
    env_file: str                             # in compose/: secrets and settings, generated on first up
    env_header: str                           # the comment at the top of a new env file
    secret_keys: tuple[str, ...]              # each gets a fresh random password when absent
    secret_files: Mapping[str, Callable[[dict[str, str]], str]]  # Compose `secrets:` file -> content
    generated: Mapping[str, Callable[[], str]] = field(default_factory=frozen_map)  # other generated values
    plain_defaults: Mapping[str, str] = field(default_factory=frozen_map)
    variants: Mapping[str, Variant] = field(default_factory=frozen_map)
    urls: Mapping[str, Url] = field(default_factory=frozen_map)
    probes: Mapping[str, Probe] = field(default_factory=frozen_map)
    data: tuple[DataVolume, ...] = ()
    e2e: Runner | None = None                 # `fxstack test <stack>`
    e2e_help: str = ""
    bench: str = ""                           # the benchmark: ./fx command and its script
    after_up: Callable[["Running", tuple[str, ...], TextIO], None] | None = None

    def generate(self) -> dict[str, str]:
        """Fresh values for every generated key (secrets, then other generated values, then the
        plain defaults)."""
        values = {key: new_password() for key in self.secret_keys}
        values.update({key: make() for key, make in self.generated.items()})
        values.update(self.plain_defaults)
        return values
