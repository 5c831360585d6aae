"""Errors that reach the user as one line and exit code 2 (bad input) or 3 (internal).

Deep layers raise; only the CLI turns these into a message and an exit code.
"""

from __future__ import annotations


class TuneupError(Exception):
    """Bad input. ``where`` names the file and place ("rules/x.toml:12", "snap.json: $.facts")."""

    kind = "error"

    def __init__(self, message: str, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class RuleFileError(TuneupError):
    kind = "rule file"


class ProfileError(TuneupError):
    kind = "profile"


class SnapshotError(TuneupError):
    kind = "snapshot"


class UsageError(TuneupError):
    kind = "usage"


class ExprError(Exception):
    """An expression could not be parsed or evaluated (the loader adds file and rule)."""


class MissingFact(ExprError):
    """An expression asked for a fact that is absent, unreadable or not collected."""

    def __init__(self, key: str, why: str) -> None:
        super().__init__(f"{key} is {why}")
        self.key = key
        self.why = why
