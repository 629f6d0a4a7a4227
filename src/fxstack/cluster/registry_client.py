"""A client for any OCI distribution registry: TLS with a named CA, plain HTTP only on request,
Basic or Bearer auth as the registry's challenge asks, and errors that name the registry and
the fix (a wrong password, an unknown CA, an unreachable host and a refused name each read
differently)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from ..errors import FxError
from .auth import Challenge, Credentials, basic_header, credentials_for, docker_config_path, parse_challenge


@dataclass(frozen=True)
class Target:
    """`REGISTRY/PREFIX` as given on the command line: where images go."""

    host: str      # host[:port], as Docker names registries
    prefix: str    # repository path under it ("" for none)

    @classmethod
    def parse(cls, text: str) -> "Target":
        text = text.strip().rstrip("/")
        for scheme in ("https://", "http://"):
            if text.startswith(scheme):
                raise FxError(f"{text!r}: give the registry without a scheme",
                              hint="e.g. registry.example.com:5000/team/fx; plain HTTP is --insecure")
        host, _, prefix = text.partition("/")
        # Docker's own rule: the first component is a registry only if it looks like a host
        if not host or not ("." in host or ":" in host or host == "localhost"):
            raise FxError(f"{text!r} does not start with a registry host",
                          hint="write REGISTRY/PREFIX, e.g. registry.example.com:5000/fx "
                               "(a host with a dot or a port, or localhost)")
        return cls(host.lower(), prefix)

    def repo(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def ref(self, name: str, digest: str) -> str:
        return f"{self.host}/{self.repo(name)}@{digest}"


def _registry_errors(resp: requests.Response) -> list[dict[str, Any]]:
    try:
        return list(resp.json().get("errors") or [])
    except (ValueError, AttributeError):
        return []


@dataclass
class RegistryClient:
    host: str
    insecure: bool = False
    ca_file: Path | None = None
    config: Path | None = None         # Docker's config.json (default: $DOCKER_CONFIG or ~/.docker)
    timeout: float = 60
    _creds: Credentials | None = None
    _creds_read: bool = False
    _basic: str | None = None
    _tokens: dict[str, str] = field(default_factory=dict)   # repository -> bearer header

    def __post_init__(self) -> None:
        self.scheme = "http" if self.insecure else "https"
        self.base = f"{self.scheme}://{self.host}"
        self.session = requests.Session()
        if self.ca_file is not None:
            if not Path(self.ca_file).is_file():
                raise FxError(f"--ca-file {self.ca_file} does not exist", where=self.host,
                              hint="name the PEM file of the CA that signed the registry's certificate")
        # passed on every request: a session-wide `verify` loses to REQUESTS_CA_BUNDLE in the env
        self.verify: str | bool = str(self.ca_file) if self.ca_file is not None else True

    # -- credentials and auth -----------------------------------------------------------------

    def credentials(self) -> Credentials | None:
        if not self._creds_read:
            self._creds = credentials_for(self.host, self.config)
            self._creds_read = True
        return self._creds

    def _login_hint(self) -> str:
        return (f"log in with `docker login {self.host}` (it writes {self.config or docker_config_path()}; "
                "DOCKER_CONFIG names another directory)")

    def _authorize(self, challenge: Challenge, repo: str | None) -> None:
        creds = self.credentials()
        if challenge.scheme == "basic":
            if creds is None:
                raise FxError(f"{self.host} asks for a login and Docker's config has none for it",
                              where=self.host, hint=self._login_hint())
            self._basic = basic_header(creds)
            return
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            raise FxError(f"{self.host} asks for an auth scheme fxstack does not speak: "
                          f"{challenge.scheme}", where=self.host,
                          hint="registries speak Basic or Bearer (token) auth; check the address")
        params: list[tuple[str, str]] = []
        if "service" in challenge.params:
            params.append(("service", challenge.params["service"]))
        for scope in challenge.params.get("scope", "").split():
            params.append(("scope", scope))
        headers = {"Authorization": basic_header(creds)} if creds else {}
        try:
            resp = self.session.get(challenge.params["realm"], params=params, headers=headers,
                                    timeout=self.timeout, verify=self.verify)
        except requests.RequestException as exc:
            raise self._transport_error(exc, challenge.params["realm"]) from None
        if resp.status_code in (401, 403):
            raise self._refused_login(creds)
        if resp.status_code >= 400:
            raise FxError(f"the token service of {self.host} answered HTTP {resp.status_code}: "
                          f"{resp.text[:200]}", where=challenge.params["realm"], hint=self._login_hint())
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        self._tokens[repo or ""] = f"Bearer {token}"

    def _refused_login(self, creds: Credentials | None) -> FxError:
        if creds is None:
            return FxError(f"{self.host} refuses anonymous access", where=self.host, hint=self._login_hint())
        return FxError(f"{self.host} refused the login of user {creds.username!r} "
                       f"(from {creds.source}): wrong user or password", where=self.host,
                       hint=f"run `docker login {self.host}` with the right password")

    def _transport_error(self, exc: Exception, url: str) -> FxError:
        text = str(exc)
        if isinstance(exc, requests.exceptions.SSLError):
            if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
                return FxError(f"the TLS certificate of {self.host} is signed by a CA this machine "
                               "does not trust", where=self.host,
                               hint="name the CA's PEM file with --ca-file (the file that signed the "
                                    "registry's certificate)")
            return FxError(f"TLS with {self.host} failed: {text[:200]}", where=self.host,
                           hint="if this registry speaks plain HTTP (a test registry), say so with "
                                "--insecure; otherwise check its certificate")
        if isinstance(exc, requests.exceptions.ConnectionError) and "BadStatusLine" not in text:
            reason = re.search(r"\[Errno -?\d+\] [^'\")]+|Name or service not known|Connection refused", text)
            return FxError(f"cannot reach the registry at {self.base}: "
                           f"{reason.group(0) if reason else text[:200]}", where=self.host,
                           hint="check the host and port and that the registry runs "
                                f"(`curl {self.base}/v2/` should answer 200 or 401)")
        if isinstance(exc, requests.exceptions.Timeout):
            return FxError(f"{self.host} did not answer within {self.timeout:.0f} s ({url})",
                           where=self.host, hint="check the network path to the registry and retry")
        return FxError(f"talking to {self.host} failed: {text[:200]}", where=self.host,
                       hint="if this registry speaks HTTPS, drop --insecure; retry")

    # -- requests ----------------------------------------------------------------------------

    def request(self, method: str, path: str, *, repo: str | None = None, ok: tuple[int, ...] = (),
                **kwargs) -> requests.Response:
        """One request with auth as needed. A status in `ok` or below 400 is returned; anything
        else becomes an FxError naming the registry, the repository and the fix."""
        url = path if path.startswith("http") else self.base + path
        body = kwargs.get("data")
        timeout = kwargs.pop("timeout", self.timeout)
        for attempt in range(2):
            headers = dict(kwargs.pop("headers", None) or {})
            auth = self._tokens.get(repo or "") or self._tokens.get("") or self._basic
            if auth:
                headers["Authorization"] = auth
            kwargs["headers"] = headers
            if hasattr(body, "seek"):
                body.seek(0)  # a retried upload sends the file from its start
            try:
                resp = self.session.request(method, url, timeout=timeout, verify=self.verify, **kwargs)
            except requests.RequestException as exc:
                raise self._transport_error(exc, url) from None
            if resp.status_code != 401:
                break
            if attempt == 1 or not resp.headers.get("WWW-Authenticate"):
                raise self._refused_login(self.credentials())
            self._authorize(parse_challenge(resp.headers["WWW-Authenticate"]), repo)
        if resp.status_code < 400 or resp.status_code in ok:
            return resp
        raise self.refused(resp, method, repo)

    def refused(self, resp: requests.Response, method: str, repo: str | None) -> FxError:
        errors = _registry_errors(resp)
        codes = {e.get("code") for e in errors}
        detail = "; ".join(f"{e.get('code')}: {e.get('message')}" for e in errors) or resp.text[:200]
        where = f"{self.host}/{repo}" if repo else self.host
        if self.insecure and resp.status_code == 400 and "HTTPS server" in resp.text:
            return FxError(f"{self.host} speaks HTTPS, and --insecure sent plain HTTP", where=where,
                           hint="drop --insecure (name the registry's CA with --ca-file if needed)")
        if codes & {"NAME_INVALID", "NAME_UNKNOWN"} or (resp.status_code == 404 and repo and not errors):
            return FxError(f"{self.host} refuses the repository name {repo!r} ({detail})", where=where,
                           hint="repository names are lowercase letters, digits and . _ - separated by "
                                "/; some registries also need the repository created first: pick "
                                "another PREFIX or create it")
        if resp.status_code == 403 or "DENIED" in codes:
            creds = self.credentials()
            who = f"user {creds.username!r}" if creds else "anonymous access"
            return FxError(f"{self.host} denies {who} the right to {method} {repo} ({detail})",
                           where=where, hint="grant the user push rights on this repository, or push "
                                             "under a PREFIX it may write")
        return FxError(f"{self.host} answered {method} with HTTP {resp.status_code} ({detail})", where=where,
                       hint="retry; `fxstack push` sends only what the registry still lacks")

    def ping(self) -> None:
        """`GET /v2/`: reachable, TLS trusted, and (where it asks) the login accepted."""
        self.request("GET", "/v2/")

    def manifest_digest(self, repo: str, reference: str, media_type: str) -> str | None:
        resp = self.request("HEAD", f"/v2/{repo}/manifests/{reference}", repo=repo, ok=(404,),
                            headers={"Accept": media_type})
        return resp.headers.get("Docker-Content-Digest") if resp.status_code == 200 else None

    def get_json(self, repo: str, path: str, accept: str) -> dict | None:
        resp = self.request("GET", f"/v2/{repo}/{path}", repo=repo, ok=(404,), headers={"Accept": accept})
        return json.loads(resp.content) if resp.status_code == 200 else None
