"""Property test: whatever sequence of bookings, the cached balance equals the ledger sum and is never
negative, and lifetime earned points never drop because of spending."""

from __future__ import annotations

import asyncio
from pathlib import Path
from tempfile import TemporaryDirectory

from hypothesis import given, settings
from hypothesis import strategies as st

from storage.db.database import Database
from storage.ledger import InsufficientPoints

bookings = st.lists(
    st.tuples(st.integers(min_value=-300, max_value=300).filter(bool), st.booleans(), st.integers(0, 5)),
    max_size=40,
)


async def _run(ops: list[tuple[int, bool, int]]) -> None:
    with TemporaryDirectory() as tmp:
        db = await Database.open(Path(tmp) / "p.db")
        try:
            async with db.transaction() as repos:
                member_id, _ = await repos.members.register("test", "m", "M", None, 0)
            expected_balance = expected_earned = 0
            seen_keys: set[int] = set()
            for delta, spend, key in ops:
                earned_delta = 0 if spend and delta < 0 else delta
                try:
                    async with db.transaction() as repos:
                        booking = await repos.ledger.append(
                            member_id, delta, "op", f"k{key}", 0, earned_delta=earned_delta
                        )
                except InsufficientPoints:
                    assert expected_balance + delta < 0 and key not in seen_keys
                    continue
                if key in seen_keys:
                    assert not booking.booked
                    continue
                seen_keys.add(key)
                expected_balance += delta
                expected_earned = max(0, expected_earned + earned_delta)
                assert booking.booked and booking.balance == expected_balance
            async with db.read() as repos:
                member = await repos.members.get(member_id)
                assert member is not None
                assert member.balance == expected_balance == await repos.ledger.sum_for(member_id)
                assert member.balance >= 0 and member.earned == expected_earned
                assert await repos.ledger.mismatched_balances() == []
        finally:
            await db.close()


@settings(max_examples=60, deadline=None)
@given(bookings)
def test_balance_always_equals_the_ledger_sum(ops: list[tuple[int, bool, int]]) -> None:
    asyncio.run(_run(ops))


async def test_ledger_rows_cannot_be_changed(tmp_path: Path) -> None:
    import aiosqlite
    import pytest

    db = await Database.open(tmp_path / "l.db")
    try:
        async with db.transaction() as repos:
            member_id, _ = await repos.members.register("test", "m", "M", None, 0)
            await repos.ledger.append(member_id, 5, "op", "k", 0)
        with pytest.raises(aiosqlite.IntegrityError, match="append-only"):
            async with db.transaction() as repos:
                await repos.conn.execute("UPDATE ledger SET delta = 500")
        with pytest.raises(aiosqlite.IntegrityError, match="append-only"):
            async with db.transaction() as repos:
                await repos.conn.execute("DELETE FROM ledger")
    finally:
        await db.close()
