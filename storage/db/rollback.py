"""The one exception a transaction understands as 'undo this on purpose'."""

from __future__ import annotations


class Rollback(Exception):
    """The one way to undo a transaction on purpose: raised inside `transaction()` (or a savepoint of it) when a
    use case finds half-way that it must not go on (no stock left, not enough points, a closed poll). The
    transaction rolls its writes back and lets it through to the caller, which answers accordingly; storage's
    refusals subclass it, and so does the handlers' `Refusal`, which carries the answer itself."""
