"""What a clean-up gave back: the one type `gc`, the loader and the registry share.

It lives below all three so that `load` can report freed space without importing `workflow`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Freed:
    """What one part gave back (or would, on a dry run)."""

    part: str
    items: int = 0
    bytes: int = 0
    notes: list[str] = field(default_factory=list)

    def add(self, path: Path) -> None:
        self.items += 1
        self.bytes += size_of(path)


def size_of(path: Path) -> int:
    """Bytes under `path` (a file, a link, or a tree; links are not followed); 0 if it is gone."""
    if path.is_dir() and not path.is_symlink():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())
    try:
        return path.lstat().st_size
    except FileNotFoundError:
        return 0
