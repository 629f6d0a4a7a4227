"""Poetry's version constraints as `packaging` specifier sets.

pyproject.toml's `[tool.poetry]` tables and poetry.lock's `dependencies` and
`python-versions` use Poetry's syntax, a superset of PEP 440: `^1.2` (caret), `~1.2`
(tilde), bare `1.2.3` (exact), `1.2.*` / `1.2.x` (wildcards), `*`, `>=1,<2` or `>=1 <2`
(and), and `||` unions. poetry-core is not in the harness, so this is a small converter
with Poetry 1.8's meaning (poetry-core 1.9's constraint parser):

  ^1.2.3 -> >=1.2.3,<2.0.0    ^0.2.3 -> >=0.2.3,<0.3.0    ^0.0.3 -> >=0.0.3,<0.0.4
  ^0.0   -> >=0.0,<0.1        ^0     -> >=0,<1
  ~1.2.3 -> >=1.2.3,<1.3.0    ~1.2   -> >=1.2,<1.3        ~1     -> >=1,<2
  ~=1.2  -> >=1.2,<2.0        ~=1.2.3 -> >=1.2.3,<1.3.0

A union cannot be one SpecifierSet, so a constraint is a tuple of them, any of which may
match. Locked pre-releases count as matching when they lie in the range (Poetry's ranges
include them; whether the solver *picks* one is a separate setting).

Checked against poetry-core 1.9.1's parse_constraint on every constraint in poetry.lock and
the documented forms, over 60 versions each: the same answers, except one Poetry gets from
merging adjacent ranges: `^1.2 || ^2.0` allows 2.0.0a1 in Poetry (one range 1.2 to 3.0)
but not here (`<2.0` excludes 2.0's pre-releases, `>=2.0` is above them).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version


class ConstraintError(ValueError):
    """A constraint string Poetry would not parse either."""


@dataclass(frozen=True)
class PoetryConstraint:
    text: str
    alternatives: tuple[SpecifierSet, ...]   # a union; SpecifierSet("") allows everything

    def allows(self, version: str | Version) -> bool:
        v = version if isinstance(version, Version) else Version(version)
        return any(spec.contains(v, prereleases=True) for spec in self.alternatives)

    def __str__(self) -> str:
        return " || ".join(str(spec) or "*" for spec in self.alternatives)


# One comparison: an operator (longest first, so `~=` is not read as `~`) and its version.
_ATOM = re.compile(r"(?P<op>===|\^|~=|~|<>|!=|==|=|>=|<=|>|<)?\s*(?P<ver>[^\s,]+)")
_ANY = re.compile(r"(?i)v?[x*](\.[x*])*")
_X_RANGE = re.compile(r"(?i)v?(?P<nums>\d+(\.\d+){0,2})(\.[x*])+")


def _bump(version: Version, index: int) -> str:
    """Poetry's next_major/next_minor/next_patch: bump release[index], zero what follows,
    keep at least the precision written (so `^1.2` gives `<2.0`)."""
    release = list(version.release) + [0] * (index + 1 - len(version.release))
    release[index] += 1
    release[index + 1:] = [0] * (len(release) - index - 1)
    epoch = f"{version.epoch}!" if version.epoch else ""
    return epoch + ".".join(map(str, release))


def _caret_upper(version: Version) -> str:
    release = version.release
    if release[0] > 0 or len(release) == 1:
        return _bump(version, 0)
    if release[1] > 0 or len(release) == 2:
        return _bump(version, 1)
    return _bump(version, 2)


def _atom(op: str | None, text: str, whole: str) -> str:
    """One Poetry comparison as a PEP 440 clause ('' for 'any')."""
    if op is None and _ANY.fullmatch(text):
        return ""
    if op in (None, "=", "==", "!=") and (x := _X_RANGE.fullmatch(text)):
        return f"{'!=' if op == '!=' else '=='}{x['nums']}.*"
    if op == "===":
        raise ConstraintError(f"arbitrary equality `===` is not a Poetry constraint: {whole!r}")
    wildcard = text.endswith(".*")
    if wildcard:
        text = text[:-2]
    try:
        version = Version("0.0.dev0" if text == "dev" else text)
    except InvalidVersion as exc:
        raise ConstraintError(f"cannot read version constraint {whole!r}: {exc}") from exc
    if op == "^":
        return f">={version},<{_caret_upper(version)}"
    if op == "~":   # Poetry's tilde: `~1` allows 1.x, anything longer only its minor
        return f">={version},<{_bump(version, 0 if len(version.release) == 1 else 1)}"
    if op == "~=":  # as Poetry reads it: two parts bump the major, else the minor
        return f">={version},<{_bump(version, 0 if len(version.release) == 2 else 1)}"
    if op in ("<", "<=", ">", ">="):
        return f"{op}{version}"  # Poetry ignores a wildcard on an ordered comparison
    # poetry-core 1.9 accepts `<>` but has no branch for it: it falls through to "exact".
    exact = "!=" if op == "!=" else "=="
    return f"{exact}{version}{'.*' if wildcard else ''}"


@lru_cache(maxsize=4096)
def parse_constraint(text: str) -> PoetryConstraint:
    """Poetry constraint text -> PoetryConstraint. Raises ConstraintError."""
    if not isinstance(text, str):
        raise ConstraintError(f"a version constraint must be a string, not {text!r}")
    alternatives = []
    for part in re.split(r"\s*\|\|?\s*", text.strip()):
        part = part.rstrip(",").strip()  # Poetry tolerates a trailing comma (seen in metadata)
        clauses = []
        rest = part
        while rest:
            m = _ATOM.match(rest)
            if m is None:
                raise ConstraintError(f"cannot read version constraint {text!r}")
            clause = _atom(m["op"], m["ver"], text)
            if clause:
                clauses.append(clause)
            rest = rest[m.end():].lstrip(" \t,")
        if not part and len(text.strip()) > 0:
            raise ConstraintError(f"empty alternative in version constraint {text!r}")
        try:
            alternatives.append(SpecifierSet(",".join(clauses)))
        except InvalidSpecifier as exc:
            raise ConstraintError(f"cannot read version constraint {text!r}: {exc}") from exc
    return PoetryConstraint(text, tuple(alternatives))
