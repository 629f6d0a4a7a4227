"""Bad input, said the project's way (what, where, what to do): the field, the reason, and what
is accepted. The maths raises `InputError`; the HTTP layer (bsopt.common.http) turns it and
FastAPI's own validation errors into one 422 shape:

    {"error": "invalid input",
     "problems": [{"field": "volatility[3]", "reason": "must be greater than 0, got -0.2",
                   "accepted": "a number in (0, 5]", "got": -0.2}],
     "hint": "fix the fields named above and send the request again"}
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class Problem:
    field: str
    reason: str
    accepted: str
    got: Any = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class InputError(ValueError):
    """One or more fields of a request that cannot be priced as given."""

    def __init__(self, problems: list[Problem] | Problem):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        super().__init__("; ".join(f"{p.field}: {p.reason} (accepted: {p.accepted})" for p in self.problems))

    def to_json(self) -> dict[str, Any]:
        return {"error": "invalid input", "problems": [p.to_json() for p in self.problems],
                "hint": "fix the fields named above and send the request again"}
