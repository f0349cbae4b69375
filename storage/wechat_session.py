"""wechatpy's session storage in the database: the access token every bot process shares.

Only the leading process fetches a token from WeChat and `put`s it; the others `get` it. A process that WeChat
refused a token to (40001, 42001) marks that very token refused (`refuse`, conditional on its value, so a newer
token the leader wrote meanwhile stays), and the leader replaces it; a process that finds no token at all asks
for one (`request`: an empty refused row).
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.db.sql import Repo, changed_one, fetch_one


@dataclass(frozen=True, slots=True)
class SessionValue:
    value: str
    expires_at: int
    """Unix seconds; 0 for a token WeChat refused."""


class WeChatSessionRepo(Repo):
    async def get(self, key: str) -> SessionValue | None:
        row = await fetch_one(self._conn, "SELECT value, expires_at FROM wechat_session WHERE key = ?", (key,))
        return None if row is None else SessionValue(str(row[0]), int(row[1]))

    async def put(self, key: str, value: str, expires_at: int) -> None:
        await self._conn.execute(
            "INSERT INTO wechat_session(key, value, expires_at) VALUES (?, ?, ?)"
            " ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at",
            (key, value, expires_at),
        )

    async def refuse(self, key: str, value: str) -> bool:
        """Mark `value` refused, if it is still the stored one; False when another value is stored by now."""
        return await changed_one(
            self._conn, "UPDATE wechat_session SET expires_at = 0 WHERE key = ? AND value = ?", (key, value)
        )

    async def request(self, key: str) -> None:
        """Ask the leader for a token when none is stored (an empty, refused row); nothing when one is."""
        await self._conn.execute(
            "INSERT INTO wechat_session(key, value, expires_at) VALUES (?, '', 0) ON CONFLICT(key) DO NOTHING", (key,)
        )

    async def delete(self, key: str) -> None:
        await self._conn.execute("DELETE FROM wechat_session WHERE key = ?", (key,))
