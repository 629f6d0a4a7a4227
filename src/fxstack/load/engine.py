"""The four Docker Engine API calls a reload makes, over the daemon's socket with the standard
library.

A code change reloads one small layer, and most of the time a whole `fxstack build --load`
process took went into importing the Docker SDK (and requests, which it pulls in), not into
talking to dockerd. The calls here are the ones on that path: is an image present, pull it
from our registry, tag it, drop the registry's name for it. Everything else keeps using the
SDK (fxstack.docker_api).
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from typing import BinaryIO, Iterator
from urllib.parse import quote, urlencode

from ..errors import FxError

API = "/v1.41"  # Docker 20.10+, the oldest Engine API these calls need


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


class EngineError(FxError):
    pass


class Engine:
    """dockerd at DOCKER_HOST (a unix:// socket; the default one when unset)."""

    def __init__(self, timeout: float = 600):
        host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        if host.startswith("unix://"):
            self._connect = lambda: _UnixConnection(host.removeprefix("unix://"), timeout)
        elif host.startswith("tcp://"):
            hostport = host.removeprefix("tcp://")
            self._connect = lambda: http.client.HTTPConnection(hostport, timeout=timeout)
        else:
            raise FxError(f"DOCKER_HOST {host!r} is neither unix:// nor tcp://", where="DOCKER_HOST",
                          hint="unset it to use /var/run/docker.sock")
        self.where = host

    def _call(self, method: str, path: str, params: dict | None = None) -> http.client.HTTPResponse:
        url = API + path + ("?" + urlencode(params) if params else "")
        conn = self._connect()
        try:
            conn.request(method, url, headers={"Host": "docker"})
            return conn.getresponse()
        except OSError as exc:
            conn.close()
            raise EngineError(f"Docker daemon unreachable at {self.where}: {exc}", where="docker",
                              hint="start the Docker daemon or point DOCKER_HOST at a running one") from None

    def _fail(self, resp: http.client.HTTPResponse, what: str) -> EngineError:
        body = resp.read().decode(errors="replace")
        try:
            body = json.loads(body).get("message", body)
        except (ValueError, AttributeError):
            pass
        return EngineError(f"dockerd refused {what}: HTTP {resp.status} {body[:300]}", where=self.where)

    def has_image(self, ref: str) -> bool:
        resp = self._call("GET", f"/images/{quote(ref, safe='')}/json")
        if resp.status == 404:
            resp.read()
            return False
        if resp.status != 200:
            raise self._fail(resp, f"inspecting {ref}")
        resp.read()
        return True

    def pull(self, repo: str, tag: str) -> Iterator[dict]:
        """The progress events of `docker pull repo:tag`; an error event raises."""
        resp = self._call("POST", "/images/create", {"fromImage": repo, "tag": tag})
        if resp.status != 200:
            raise self._fail(resp, f"pulling {repo}:{tag}")
        with resp:
            for line in resp:
                if not line.strip():
                    continue
                event = json.loads(line)
                if "error" in event:
                    raise EngineError(f"pulling {repo}:{tag}: {event['error']}", where=self.where)
                yield event

    def layers_of(self, ref: str) -> list[str] | None:
        """The diff ids of the image `ref`, bottom first; None when dockerd has no such image."""
        resp = self._call("GET", f"/images/{quote(ref, safe='')}/json")
        if resp.status == 404:
            resp.read()
            return None
        if resp.status != 200:
            raise self._fail(resp, f"inspecting {ref}")
        return list(json.loads(resp.read()).get("RootFS", {}).get("Layers") or [])

    def load(self, archive: BinaryIO, size: int) -> None:
        """`docker load` of a docker-archive; an error in its output raises."""
        url = API + "/images/load?quiet=1"
        conn = self._connect()
        try:
            conn.request("POST", url, body=archive, headers={
                "Host": "docker", "Content-Type": "application/x-tar", "Content-Length": str(size)})
            resp = conn.getresponse()
        except OSError as exc:
            conn.close()
            raise EngineError(f"Docker daemon unreachable at {self.where}: {exc}", where="docker",
                              hint="start the Docker daemon or point DOCKER_HOST at a running one") from None
        if resp.status != 200:
            raise self._fail(resp, "loading an image archive")
        with resp:
            for line in resp.read().splitlines():
                if line.strip():
                    event = json.loads(line)
                    if "error" in event or "errorDetail" in event:
                        raise EngineError(f"docker load: {event.get('error') or event['errorDetail']}",
                                          where=self.where)

    def tag(self, source: str, repo: str, tag: str) -> None:
        resp = self._call("POST", f"/images/{quote(source, safe='')}/tag", {"repo": repo, "tag": tag})
        if resp.status not in (200, 201):
            raise self._fail(resp, f"tagging {source} as {repo}:{tag}")
        resp.read()

    def untag(self, ref: str) -> None:
        """Remove the name `ref`, keeping the layers (another name holds the same image)."""
        resp = self._call("DELETE", f"/images/{quote(ref, safe='')}", {"noprune": "1"})
        if resp.status != 200:
            raise self._fail(resp, f"removing the name {ref}")
        resp.read()
