"""Registry credentials the way Docker keeps them, and the auth schemes registries ask for.

Credentials come from Docker's own config (`$DOCKER_CONFIG/config.json`, else
`~/.docker/config.json`), as `docker login` writes it: `auths.<host>.auth` is base64
`user:password`; `credHelpers.<host>` / `credsStore` name a `docker-credential-<helper>` program
that answers `get` with JSON. Which scheme is used is the registry's choice, read from its
`WWW-Authenticate` challenge: Basic (htpasswd) or Bearer (a token service, Docker Hub style).
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import FxError


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    source: str  # where they came from, for error messages


def docker_config_path() -> Path:
    base = os.environ.get("DOCKER_CONFIG")
    return (Path(base) if base else Path.home() / ".docker") / "config.json"


def _host_of(key: str) -> str:
    """`https://host:port/v1/` and `host:port` name the same registry in `auths`."""
    key = re.sub(r"^[a-z]+://", "", key.strip())
    return key.split("/", 1)[0].lower()


def _from_helper(helper: str, host: str, config: Path) -> Credentials | None:
    program = f"docker-credential-{helper}"
    if shutil.which(program) is None:
        raise FxError(f"{config} names the credential helper {helper!r} for {host}, but {program} "
                      "is not on PATH", where=str(config),
                      hint=f"install {program}, or put `auths.{host}.auth` (base64 user:password) "
                           "in the config, which `docker login` does without a helper")
    proc = subprocess.run([program, "get"], input=host, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        if "credentials not found" in (proc.stdout + proc.stderr).lower():
            return None
        raise FxError(f"{program} get {host} failed: {(proc.stderr or proc.stdout).strip()[:300]}",
                      where=str(config), hint=f"run `docker login {host}` again")
    try:
        answer = json.loads(proc.stdout)
        return Credentials(answer["Username"], answer["Secret"], f"{program}")
    except (ValueError, KeyError):
        raise FxError(f"{program} answered something that is not credentials JSON",
                      where=str(config), hint=f"check {program} by hand: echo {host} | {program} get") from None


def credentials_for(host: str, config: Path | None = None) -> Credentials | None:
    """The credentials Docker would use for `host`, or None when it has none."""
    config = config or docker_config_path()
    try:
        doc = json.loads(config.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FxError(f"cannot read Docker's config: {exc}", where=str(config),
                      hint="fix or remove the file (`docker login` rewrites it)") from None
    host = host.lower()
    helper = {_host_of(k): v for k, v in (doc.get("credHelpers") or {}).items()}.get(host)
    if helper:
        return _from_helper(helper, host, config)
    for key, entry in (doc.get("auths") or {}).items():
        if _host_of(key) != host or not isinstance(entry, dict):
            continue
        if entry.get("auth"):
            try:
                user, colon, password = base64.b64decode(entry["auth"], validate=True).decode().partition(":")
                if not colon:
                    raise ValueError("no ':'")
            except (ValueError, UnicodeDecodeError):
                raise FxError(f"auths.{key}.auth is not base64 of user:password", where=str(config),
                              hint=f"run `docker login {host}` again") from None
            return Credentials(user, password, f"{config} (auths.{key})")
        if entry.get("username") and entry.get("password"):
            return Credentials(entry["username"], entry["password"], f"{config} (auths.{key})")
        if entry.get("identitytoken"):
            raise FxError(f"auths.{key} holds an identity token (OAuth refresh), which fxstack "
                          "does not exchange", where=str(config),
                          hint=f"log in with a password or access token: `docker login {host}`")
    if doc.get("credsStore"):
        return _from_helper(doc["credsStore"], host, config)
    return None


_PARAM = re.compile(r'(\w+)="([^"]*)"')


@dataclass(frozen=True)
class Challenge:
    scheme: str            # "basic" or "bearer"
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge:
    scheme, _, rest = header.strip().partition(" ")
    return Challenge(scheme.lower(), dict(_PARAM.findall(rest)))


def basic_header(creds: Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()
