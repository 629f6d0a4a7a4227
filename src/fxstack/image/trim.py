"""Files of installed Python packages that one image never reads, left out of its layers.

An image spec's `trim` table names them (images/fx-fastapi.toml): rules of fnmatch patterns
over paths relative to site-packages (`*` also crosses `/`), each with its reason. A rule with
`unless_imported = true` keeps the files an import profile names: the modules the running
service imported, one path per line (`pandas/core/frame.py`,
`sklearn/utils/_random.cpython-311-x86_64-linux-gnu.so`), written by
`tools/import_profile.py`. A `.pyc` counts as imported when its source does, so
`**/__pycache__/*.pyc` under such a rule keeps byte-code only for what the service imports;
every other module still imports from its source.

A trimmed image's package layers are its own (the same packages per layer as the shared
layers, fewer files), so the images that share the untrimmed layers do not change.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import FxError
from .settings import SITE_PACKAGES

_PYC = re.compile(r"^(?P<dir>(?:.*/)?)__pycache__/(?P<mod>[^/.]+)\.cpython-\d+(?:\.opt-\d)?\.pyc$")


def read_profile(path: Path) -> frozenset[str]:
    """The profile's paths (site-packages relative); `#` lines are comments."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise FxError(f"cannot read the import profile: {exc}", where=str(path),
                      hint="`.venv/bin/python tools/import_profile.py` writes it from the running service") from exc
    return frozenset(l.strip() for l in lines if l.strip() and not l.startswith("#"))


def source_of(rel: str) -> str:
    """The module file a path stands for: a `.pyc` stands for its `.py`, anything else for itself."""
    m = _PYC.match(rel)
    return f"{m['dir']}{m['mod']}.py" if m else rel


@dataclass(frozen=True)
class Rule:
    patterns: tuple[str, ...]
    reason: str
    unless_imported: bool

    def drops(self, rel: str, imported: frozenset[str]) -> bool:
        if not any(fnmatch.fnmatchcase(rel, p) for p in self.patterns):
            return False
        return not (self.unless_imported and source_of(rel) in imported)


@dataclass(frozen=True)
class Trim:
    rules: tuple[Rule, ...]
    imported: frozenset[str]
    profile_sha256: str = ""

    @classmethod
    def from_spec(cls, trim: dict | None, root: Path) -> Trim | None:
        if not trim:
            return None
        imported, digest = frozenset(), ""
        if trim.get("profile"):
            path = root / trim["profile"]
            imported = read_profile(path)
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        rules = tuple(Rule(tuple(d["files"]), d["reason"], d.get("unless_imported", False))
                      for d in trim.get("drop", []))
        return cls(rules, imported, digest)

    @property
    def key(self) -> str:
        """What the trimmed layers follow from (part of their cache keys)."""
        return hashlib.sha256(json.dumps(
            [[list(r.patterns), r.unless_imported] for r in self.rules] + [self.profile_sha256],
            separators=(",", ":")).encode()).hexdigest()

    def drops(self, rel: str) -> bool:
        """Whether a site-packages relative file path is left out."""
        return any(r.drops(rel, self.imported) for r in self.rules)

    def skipper(self, tree: Path):
        """tree_entries' skip predicate over one installed tree (paths relative to its `/`):
        files under site-packages that a rule drops; a directory is never dropped whole."""
        prefix = SITE_PACKAGES + "/"

        def skip(tree_rel: str) -> bool:
            return (tree_rel.startswith(prefix) and self.drops(tree_rel[len(prefix):])
                    and not (tree / tree_rel).is_dir())
        return skip
