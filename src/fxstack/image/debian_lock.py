"""`images/debian.lock`: every package of every root filesystem, by version, architecture and sha256.

One entry per package set (the sorted names a spec asks for). An entry lists every package
that ends up installed, the essential ones included, so a build can install exactly that
set from `.deb` files whose bytes are known, whatever the mirror serves today. `resolved` is
when the entry was resolved against the mirror (UTC, snapshot.debian.org's timestamp form),
so a machine that reaches a snapshot mirror can fetch any locked file again.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import FxError
from .store import atomic_write_bytes

FORMAT = 2
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, order=True)
class LockedDeb:
    name: str
    version: str
    arch: str = ""     # empty only in a format-1 lock, filled in when the file is first fetched
    sha256: str = ""   # likewise

    @property
    def verified(self) -> bool:
        return bool(self.arch and self.sha256)

    @property
    def filename(self) -> str:
        """The pool's own naming (epoch colon quoted as apt does), for a local repository."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.arch}.deb"


@dataclass(frozen=True)
class LockEntry:
    packages: dict[str, LockedDeb]
    resolved: str = ""

    def versions(self) -> dict[str, str]:
        return {n: d.version for n, d in self.packages.items()}

    def debs(self) -> list[LockedDeb]:
        return sorted(self.packages.values())


def utc_stamp(now: datetime.datetime | None = None) -> str:
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return now.strftime("%Y%m%dT%H%M%SZ")


class DebianLock:
    def __init__(self, path: Path):
        self.path = path
        self.entries: dict[str, LockEntry] = {}
        try:
            raw = json.loads(path.read_text())
        except FileNotFoundError:
            return
        except json.JSONDecodeError as exc:
            raise FxError(f"not valid JSON: {exc}", where=str(path),
                          hint="restore it from git, or delete it and build with --update-debian-lock")
        self.entries = self._parse(raw)

    def _parse(self, raw) -> dict[str, LockEntry]:
        if not isinstance(raw, dict):
            raise FxError("expected a JSON object", where=str(self.path))
        if raw.get("format") is None:
            # Format 1: {package set: {package: version}}; arch and sha256 are learnt on fetch.
            return {key: LockEntry({n: LockedDeb(n, v) for n, v in pins.items()})
                    for key, pins in raw.items()}
        if raw.get("format") != FORMAT:
            raise FxError(f"format {raw.get('format')!r} is not one this fxstack reads ({FORMAT})",
                          where=str(self.path), hint="update fxstack, or re-resolve with --update-debian-lock")
        entries = {}
        for key, entry in raw.get("rootfs", {}).items():
            debs = {}
            for name, fields in entry.get("packages", {}).items():
                where = f"{self.path}: rootfs [{key}]: {name}"
                try:
                    deb = LockedDeb(name, fields["version"], fields["arch"], fields["sha256"])
                except (KeyError, TypeError):
                    raise FxError("needs version, arch and sha256", where=where,
                                  hint="re-resolve with `fxstack build --update-debian-lock`") from None
                # Empty: a pin carried over from format 1, verified and filled in on first fetch.
                if deb.sha256 and not _SHA256.fullmatch(deb.sha256):
                    raise FxError(f"sha256 {deb.sha256!r} is not 64 hex digits", where=where)
                debs[name] = deb
            entries[key] = LockEntry(debs, entry.get("resolved", ""))
        return entries

    def entry(self, key: str) -> LockEntry | None:
        return self.entries.get(key)

    def record(self, key: str, entry: LockEntry) -> None:
        self.entries[key] = entry
        self.write()

    def retain(self, keys: set[str]) -> list[str]:
        """Drop the entries of package sets no spec asks for any more (a spec changed its
        packages); returns what was dropped."""
        stale = sorted(k for k in self.entries if k not in keys)
        if stale:
            for key in stale:
                del self.entries[key]
            self.write()
        return stale

    def write(self) -> None:
        doc = {
            "format": FORMAT,
            "rootfs": {
                key: {
                    "resolved": e.resolved,
                    "packages": {d.name: {"version": d.version, "arch": d.arch, "sha256": d.sha256}
                                 for d in e.debs()},
                }
                for key, e in sorted(self.entries.items())
            },
        }
        atomic_write_bytes(self.path, (json.dumps(doc, indent=1) + "\n").encode())


@dataclass(frozen=True)
class Change:
    """One row of a drift table: a package whose locked version differs from what resolves now."""

    name: str
    locked: str | None
    now: str | None
    suite: str = ""


def changes(old: LockEntry | None, new: LockEntry, suites: dict[tuple[str, str], str]) -> list[Change]:
    before = old.versions() if old else {}
    after = new.versions()
    rows = []
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            now = after.get(name)
            rows.append(Change(name, before.get(name), now, suites.get((name, now or ""), "")))
    return rows


def drift_table(rows: list[Change]) -> str:
    width = max([len(r.name) for r in rows] + [7])
    lines = [f"  {'package':{width}}  {'locked':24}  {'now':24}  from"]
    for r in rows:
        lines.append(f"  {r.name:{width}}  {r.locked or '(none)':24}  {r.now or '(removed)':24}  {r.suite}")
    return "\n".join(lines)
