"""The one error shape of our services, said the project's way (what, where, what to do):

    {"detail": "invalid request: volatility[3]: must be greater than 0; accepted: a number in (0, 5]",
     "errors": [{"field": "volatility[3]", "reason": "must be greater than 0",
                 "accepted": "a number in (0, 5]", "got": -0.2}]}

`detail` is for people, `errors` for programs: one entry per bad field, with the field (dotted,
list items as `[i]`), the reason, what is accepted there instead, and the value received
(shortened to 200 characters; null when there was none). Every 413 and 422 has this shape.

Plain Python: code that is not a web service (bsopt's maths and tasks) raises `InputError`
without importing FastAPI.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Iterable, Mapping

SHORT = 200


def short(value: Any) -> Any:
    """The value itself, or the first 200 characters of its repr when it is longer."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else repr(value)
    if len(text) <= SHORT:
        return value if isinstance(value, (str, list, dict)) else text
    return text[:SHORT] + "..."


@dataclass(frozen=True)
class Problem:
    field: str
    reason: str
    accepted: str
    got: Any = None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["got"] = short(self.got)
        return out


class InputError(ValueError):
    """One or more fields of a request that cannot be served as given (answered 422)."""

    def __init__(self, problems: "Iterable[Problem] | Problem"):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("; ".join(f"{p.field}: {p.reason} (accepted: {p.accepted})"
                                   for p in self.problems))


def error_body(problems: Iterable[Problem | Mapping[str, Any]], *,
               prefix: str = "invalid request") -> dict[str, Any]:
    """The JSON body of a 413/422: `detail` for people, `errors` for programs."""
    items = [p.to_json() if isinstance(p, Problem) else
             {"field": p["field"], "reason": p["reason"], "accepted": p["accepted"],
              "got": short(p.get("got"))} for p in problems]
    parts = [f"{e['field']}: {e['reason']}" + (f"; accepted: {e['accepted']}" if e["accepted"] else "")
             for e in items]
    return {"detail": f"{prefix}: " + " | ".join(parts), "errors": items}
