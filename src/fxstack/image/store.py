"""Content-addressed storage with atomic writes.

Everything the builder produces lands here by digest: layer tars, configs, manifests.
A write goes to a temporary file in the same directory and is renamed into place only once
it is complete and its digest is known, so an interrupted build never leaves a bad entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any, Iterator

from ..errors import FxError


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def canonical_json(value: Any) -> bytes:
    """The one JSON encoding we hash: sorted keys, no whitespace."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


class _HashingWriter:
    def __init__(self, raw: IO[bytes]):
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


class BlobStore:
    """`<root>/blobs/sha256/<hex>`: the OCI layout's blob directory, shared by every image."""

    def __init__(self, root: Path):
        self.root = root
        self.blobs = root / "blobs" / "sha256"
        self.blobs.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        return self.blobs / digest.removeprefix("sha256:")

    def has(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            atomic_write_bytes(self.path(digest), data)
        return digest, len(data)

    @contextmanager
    def writer(self) -> Iterator[_HashingWriter]:
        """Stream a blob in; on success it is renamed to its digest. Yields the writer,
        whose `.digest`/`.size` are set after the block exits."""
        fd, tmp = tempfile.mkstemp(dir=self.blobs, prefix=".incoming.", suffix=".tmp")
        os.fchmod(fd, 0o644)
        try:
            with os.fdopen(fd, "wb") as raw:
                w = _HashingWriter(raw)
                yield w
                raw.flush()
                os.fsync(raw.fileno())
            w.digest = "sha256:" + w.hash.hexdigest()
            final = self.path(w.digest)
            if final.exists():
                os.unlink(tmp)
            else:
                os.replace(tmp, final)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise


class KeyedCache:
    """inputs-key -> small JSON record (e.g. the digest of the layer those inputs make)."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads((self.root / f"{key}.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def put(self, key: str, record: dict[str, Any]) -> None:
        atomic_write_bytes(self.root / f"{key}.json", canonical_json(record))


def inputs_key(*parts: Any) -> str:
    """A cache key from anything JSON-serialisable that determines an output."""
    return hashlib.sha256(canonical_json(list(parts))).hexdigest()


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (created if missing), for a read-modify-write that several
    processes do on one file, or a start that only one of them may do."""
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextmanager
def state_lock(state: Path, *, exclusive: bool) -> Iterator[None]:
    """Builds and loads share the state directory; `gc` needs it to itself, or it could delete
    a layer a build has just written but not yet named in an image."""
    import fcntl

    state.mkdir(parents=True, exist_ok=True)
    with open(state / ".lock", "a+") as f:
        try:
            fcntl.flock(f, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            if not exclusive:  # a gc is sweeping: wait for it rather than fail the build
                fcntl.flock(f, fcntl.LOCK_SH)
            else:
                raise FxError("a build or load is using this state directory", where=str(state),
                              hint="run `fxstack gc` again when it has finished") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
