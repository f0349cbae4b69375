"""What `vipbot doctor` reports: one `Finding` per check, each with the fix when it failed."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Outcome(Enum):
    OK = "ok"
    WARN = "warn"  # works, but something a shop owner should know (exit code stays 0)
    FAIL = "fail"  # the bot cannot work this way (exit code non-zero)


@dataclass(frozen=True)
class Finding:
    """One check's result: `name` (e.g. 'telegram token'), what was found, and how to fix it when not OK."""

    outcome: Outcome
    name: str
    detail: str
    fix: str = ""

    @classmethod
    def ok(cls, name: str, detail: str) -> Finding:
        return cls(Outcome.OK, name, detail)

    @classmethod
    def warn(cls, name: str, detail: str, fix: str) -> Finding:
        return cls(Outcome.WARN, name, detail, fix)

    @classmethod
    def fail(cls, name: str, detail: str, fix: str) -> Finding:
        return cls(Outcome.FAIL, name, detail, fix)
