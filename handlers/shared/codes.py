"""Short codes members quote at the till (claims, redemptions, group buys): random, unambiguous, unique."""

from __future__ import annotations

import secrets

from handlers.core.command import Refusal
from handlers.core.deps import Deps

# No 0/O, 1/I/L: codes are read aloud and typed from screenshots.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_code(prefix: str, length: int = 6) -> str:
    """e.g. ``S-7KQ2XM``; 31^6 ≈ 887 million per prefix, and the database's UNIQUE index has the last word."""
    return f"{prefix}-" + "".join(secrets.choice(ALPHABET) for _ in range(length))


def normalise(code: str) -> str:
    return code.strip().upper().replace(" ", "")


def required_code(deps: Deps, text: str, usage: str) -> str:
    """The code `text` holds, as stored; a `Refusal` with the usage of the command `usage` when it is empty."""
    if not text.strip():
        raise Refusal(*deps.usage(usage))
    return normalise(text)
