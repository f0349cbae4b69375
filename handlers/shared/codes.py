"""Short codes members quote at the till (claims, redemptions, group buys): random, unambiguous, unique."""

from __future__ import annotations

import secrets

# No 0/O, 1/I/L: codes are read aloud and typed from screenshots.
ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"


def new_code(prefix: str, length: int = 6) -> str:
    """e.g. ``S-7KQ2XM``; 31^6 ≈ 887 million per prefix, and the database's UNIQUE index has the last word."""
    return f"{prefix}-" + "".join(secrets.choice(ALPHABET) for _ in range(length))


def normalise(code: str) -> str:
    return code.strip().upper().replace(" ", "")
