"""Deterministic layer tars: sorted entries, fixed owners and mtimes, no host names.

Every layer the builder writes goes through `LayerWriter`, so two builds of the same
inputs give byte-identical tars whatever the host's umask, clock or user database.
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO, Callable, Iterable

from .settings import SOURCE_DATE_EPOCH as EPOCH


@dataclass(frozen=True)
class Entry:
    """One tar member: `path` is relative to / without a leading slash."""

    path: str
    kind: str                     # "dir" | "file" | "symlink" | "hardlink"
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    size: int = 0
    linkname: str = ""
    opener: Callable[[], BinaryIO] | None = None


def normal_mode(host_mode: int, is_dir: bool) -> int:
    """Permissions that do not depend on the host's umask: 755 or 644."""
    if is_dir or host_mode & 0o111:
        return 0o755
    return 0o644


def tree_entries(root: Path, dest: str, *, uid: int = 0, gid: int = 0,
                 skip: Callable[[str], bool] | None = None) -> list[Entry]:
    """Entries for a file or directory tree at `root`, placed at `dest` in the image."""
    dest = dest.strip("/")
    out: list[Entry] = []

    def add(path: Path, rel: str) -> None:
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            out.append(Entry(rel, "symlink", 0o777, uid, gid, linkname=os.readlink(path)))
        elif stat.S_ISDIR(st.st_mode):
            out.append(Entry(rel, "dir", 0o755, uid, gid))
            for child in sorted(os.listdir(path)):
                child_rel = f"{rel}/{child}" if rel else child
                if skip is None or not skip(child_rel):
                    add(path / child, child_rel)
        elif stat.S_ISREG(st.st_mode):
            out.append(Entry(rel, "file", normal_mode(st.st_mode, False), uid, gid,
                             st.st_size, opener=lambda p=path: open(p, "rb")))

    add(root, dest)
    return out


def parent_dirs(paths: Iterable[str]) -> list[Entry]:
    seen: set[str] = set()
    for p in paths:
        for parent in PurePosixPath(p).parents:
            if str(parent) != ".":
                seen.add(str(parent))
    return [Entry(p, "dir") for p in sorted(seen)]


def merge_entries(groups: Iterable[Iterable[Entry]]) -> list[Entry]:
    """Union of entry lists; directories dedupe, a later file wins over an earlier one."""
    merged: dict[str, Entry] = {}
    for group in groups:
        for e in group:
            if e.kind == "dir" and e.path in merged:
                continue
            merged[e.path] = e
    for d in parent_dirs(merged):
        merged.setdefault(d.path, d)
    return [merged[k] for k in sorted(merged)]


def write_tar(entries: Iterable[Entry], out: BinaryIO) -> None:
    """Write entries, sorted by path, as a PAX tar with epoch mtimes and numeric owners."""
    with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for e in sorted(entries, key=lambda e: e.path):
            info = tarfile.TarInfo(e.path + ("/" if e.kind == "dir" else ""))
            info.mtime, info.uid, info.gid, info.uname, info.gname = EPOCH, e.uid, e.gid, "", ""
            info.mode = e.mode
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            elif e.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e.linkname
                tar.addfile(info)
            elif e.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, e.linkname
                tar.addfile(info)
            else:
                info.size = e.size
                assert e.opener is not None
                with e.opener() as f:
                    tar.addfile(info, f)


def normalize_tar(src: BinaryIO, out: BinaryIO, *, drop: Callable[[str], bool]) -> None:
    """Rewrite a tar (e.g. mmdebstrap's) into our canonical form, dropping some members.

    Sorted by name, mtimes clamped to the epoch, user/group names removed; owners, modes,
    links and device-free contents kept as they are.
    """
    with tarfile.open(fileobj=src, mode="r:*") as tin:
        members = [m for m in tin.getmembers() if not drop(m.name.lstrip("./"))]
        members.sort(key=lambda m: m.name.lstrip("./").rstrip("/"))
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tout:
            for m in members:
                name = m.name.lstrip("./").rstrip("/") or "."
                if name == ".":
                    continue
                info = tarfile.TarInfo(name + ("/" if m.isdir() else ""))
                info.type, info.mode, info.uid, info.gid = m.type, m.mode, m.uid, m.gid
                info.uname = info.gname = ""
                info.mtime = min(int(m.mtime), EPOCH)
                info.size, info.devmajor, info.devminor = m.size, m.devmajor, m.devminor
                info.linkname = m.linkname.lstrip("./") if m.islnk() else m.linkname
                info.pax_headers = {k: v for k, v in m.pax_headers.items()
                                    if k.startswith("SCHILY.xattr.security.capability")}
                tout.addfile(info, tin.extractfile(m) if m.isreg() else None)


def bytes_opener(data: bytes) -> Callable[[], BinaryIO]:
    return lambda: io.BytesIO(data)
