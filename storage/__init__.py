"""SQL over aiosqlite: the database, its numbered migrations and one small repository per table group.

Nothing in this package imports a platform library; invariants (one check-in a day, idempotent ledger,
non-negative balances) are enforced by constraints in the schema, not by reading first.
"""
