"""A keep-alive HTTP/1.1 client for the local registry, on the standard library.

The registry is on 127.0.0.1 and speaks plain HTTP; what a push needs (HEAD, POST, PUT of a
file, GET of JSON) is a few lines of http.client. Importing requests cost more than the whole
push of a changed app layer, on the path `fxstack build --load` takes after every code change.
"""

from __future__ import annotations

import http.client
import json
from typing import Any, BinaryIO
from urllib.parse import urlencode, urlsplit


class Response:
    def __init__(self, status: int, headers: http.client.HTTPMessage, body: bytes):
        self.status_code = status
        self.headers = headers  # case-insensitive, as HTTP headers are
        self.content = body

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Session:
    """One connection to one origin (http://host:port), reopened when the server closed it."""

    def __init__(self, base: str):
        parts = urlsplit(base)
        self.netloc = parts.netloc
        self._conn: http.client.HTTPConnection | None = None

    def request(self, method: str, url: str, *, params: dict | None = None, data: bytes | BinaryIO | None = None,
                headers: dict[str, str] | None = None, timeout: float = 60) -> Response:
        parts = urlsplit(url)
        if parts.netloc and parts.netloc != self.netloc:
            raise ValueError(f"{url} is not on {self.netloc}")
        target = parts.path + ("?" + parts.query if parts.query else "")
        if params:
            target += ("&" if parts.query else "?") + urlencode(params)
        headers = dict(headers or {})
        if data is None and method in ("POST", "PUT"):
            headers.setdefault("Content-Length", "0")
        for attempt in (0, 1):
            fresh = self._conn is None
            if fresh:
                self._conn = http.client.HTTPConnection(self.netloc, timeout=timeout)
            conn = self._conn
            conn.timeout = timeout
            if conn.sock is not None:
                conn.sock.settimeout(timeout)
            try:
                conn.request(method, target, body=data, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # a kept-alive connection the server had closed: retry once on a new one,
                # unless the body was a file already partly sent
                self.close()
                if fresh or attempt or (data is not None and not isinstance(data, bytes)):
                    raise
                continue
            except OSError:
                self.close()
                raise
            if resp.will_close:
                self.close()
            return Response(resp.status, resp.headers, body)
        raise AssertionError("unreachable")

    def get(self, url: str, **kw) -> Response:
        return self.request("GET", url, **kw)

    def head(self, url: str, **kw) -> Response:
        return self.request("HEAD", url, **kw)

    def post(self, url: str, **kw) -> Response:
        return self.request("POST", url, **kw)

    def put(self, url: str, **kw) -> Response:
        return self.request("PUT", url, **kw)

    def delete(self, url: str, **kw) -> Response:
        return self.request("DELETE", url, **kw)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
