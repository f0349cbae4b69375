"""WeChat's (timestamp, nonce) pairs and the message each was first seen with.

In plain and compatible mode WeChat signs only token, timestamp and nonce, so whoever saw one signed URL
could post another body under it. The first body seen with a pair owns it; the same body again is WeChat's
retry, any other body is refused. One conditional upsert decides, so two processes (or two concurrent
requests) cannot both win with different bodies.
"""

from __future__ import annotations

from storage.db.sql import Repo, changed_one


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

    async def prune(self, now: int) -> int:
        """Forget pairs whose timestamp would be refused by now anyway."""
        cur = await self._conn.execute("DELETE FROM wechat_nonces WHERE keep_until < ?", (now,), bulk=True)
        return cur.rowcount
