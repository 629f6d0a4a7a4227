"""One error type for everything a user can fix: it says where (file, field, service) and what to do."""

from __future__ import annotations


class FxError(Exception):
    """A problem the user can act on. `where` names the file/field/service, `hint` what to do."""

    def __init__(self, message: str, *, where: str | None = None, hint: str | None = None):
        self.message = message
        self.where = where
        self.hint = hint
        super().__init__(str(self))

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.hint:
            text += f"\n  -> {self.hint}"
        return text
