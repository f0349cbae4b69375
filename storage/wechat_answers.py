"""The answers to WeChat's pushed messages, kept for WeChat's retries on any bot process.

A message's answer is recorded in the transaction that marks it done in the inbox (the dispatcher's reply sink),
so a message is either not handled anywhere (a retry handles it) or handled with its answer stored (a retry
answers with it). At most one answer of a message goes out through the customer-service API, and none once a
retry got it in its HTTP response: `claim_late` and `claim_passive` are conditional updates on the same row, so
one of the two wins.
"""

from __future__ import annotations

from storage.db.sql import Repo, changed_one, fetch_all, fetch_one


class WeChatAnswerRepo(Repo):
    async def record(self, key: str, answer: str, now: int) -> None:
        """Keep the answer of the message `key` (a message handled again after a fault gets its newer answer)."""
        await self._conn.execute(
            "INSERT INTO wechat_answers(key, answer, answered_at) VALUES (?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET answer = excluded.answer, answered_at = excluded.answered_at",
            (key, answer, now),
        )

    async def answer(self, key: str) -> str | None:
        """The stored answer of the message `key`, None when it has none (not handled, or pruned)."""
        row = await fetch_one(self._conn, "SELECT answer FROM wechat_answers WHERE key = ?", (key,))
        return None if row is None else str(row[0])

    async def claim_late(self, key: str, now: int) -> bool:
        """The right to send the answer through the customer-service API: once, and only while no retry got it
        in its HTTP response."""
        return await changed_one(
            self._conn,
            "UPDATE wechat_answers SET late_at = ? WHERE key = ? AND late_at IS NULL AND passive_at IS NULL",
            (now, key),
        )

    async def claim_passive(self, key: str, now: int) -> bool:
        """The right to answer a retry in its HTTP response: while the answer has not gone out through the
        customer-service API (any number of retries may, WeChat shows the answer to one)."""
        return await changed_one(
            self._conn,
            "UPDATE wechat_answers SET passive_at = COALESCE(passive_at, ?) WHERE key = ? AND late_at IS NULL",
            (now, key),
        )

    async def undelivered(self, answered_before: int, limit: int) -> list[tuple[str, str]]:
        """(key, answer) of answers recorded before `answered_before` that went out neither in an HTTP response nor
        late: the attempt that would have sent them is gone (its worker died) and WeChat stopped retrying. Uses
        the age index: only the last minutes' rows are kept."""
        rows = await fetch_all(
            self._conn,
            "SELECT key, answer FROM wechat_answers WHERE answered_at < ? AND late_at IS NULL AND passive_at IS NULL"
            " ORDER BY answered_at LIMIT ?",
            (answered_before, limit),
        )
        return [(str(r[0]), str(r[1])) for r in rows]

    async def prune(self, older_than: int) -> int:
        """Forget answers recorded before `older_than` (WeChat's retries come within seconds)."""
        cur = await self._conn.execute("DELETE FROM wechat_answers WHERE answered_at < ?", (older_than,), bulk=True)
        return cur.rowcount
