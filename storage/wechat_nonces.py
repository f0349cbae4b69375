"""WeChat's (timestamp, nonce) pairs and the message each was first seen with.

In plain and compatible mode WeChat signs only token, timestamp and nonce, so whoever saw one signed URL
could post another body under it. The first body seen with a pair owns it; the same body again is WeChat's
retry, any other body is refused. One conditional upsert decides, so two processes (or two concurrent
requests) cannot both win with different bodies.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from storage.db.sql import BULK_ROWS, Repo, changed_one, fetch_all


class WeChatNonceRepo(Repo):
    async def bind(self, timestamp: str, nonce: str, digest: str, *, keep_until: int) -> bool:
        """Bind the pair to `digest`; True when it is new or already bound to the same digest (a retry)."""
        return await changed_one(
            self._conn,
            "INSERT INTO wechat_nonces(timestamp, nonce, digest, keep_until) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(timestamp, nonce) DO UPDATE SET keep_until = wechat_nonces.keep_until"
            " WHERE wechat_nonces.digest = excluded.digest",
            (timestamp, nonce, digest, keep_until),
        )

    async def bind_many(self, items: Sequence[tuple[str, str, str, int]]) -> list[bool]:
        """`bind` for many (timestamp, nonce, digest, keep until) in one statement, in order of the pair (so that
        two processes binding overlapping batches at once lock the rows in the same order: no deadlock); one
        result per item. A pair twice in `items`: the first digest binds, a later one is True only when the same."""
        first: dict[tuple[str, str], str] = {}
        for timestamp, nonce, digest, _ in items:
            first.setdefault((timestamp, nonce), digest)
        unique = sorted({(t, n): (t, n, first[(t, n)], k) for t, n, _, k in items}.values())
        if not unique:
            return []
        rows = await fetch_all(
            self._conn,
            "INSERT INTO wechat_nonces(timestamp, nonce, digest, keep_until)"
            " SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'),"
            " CAST(json_extract(j.value, '$[3]') AS BIGINT) FROM json_each(?) j WHERE true ORDER BY j.key"
            " ON CONFLICT(timestamp, nonce) DO UPDATE SET keep_until = wechat_nonces.keep_until"
            " WHERE wechat_nonces.digest = excluded.digest RETURNING timestamp, nonce",
            (json.dumps([list(item) for item in unique]),),
            bulk=len(unique) > BULK_ROWS,
        )
        bound = {(str(r[0]), str(r[1])) for r in rows}
        return [(t, n) in bound and first[(t, n)] == d for t, n, d, _ in items]

    async def prune(self, now: int) -> int:
        """Forget pairs whose timestamp would be refused by now anyway."""
        cur = await self._conn.execute("DELETE FROM wechat_nonces WHERE keep_until < ?", (now,), bulk=True)
        return cur.rowcount
