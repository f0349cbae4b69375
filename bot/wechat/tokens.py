"""The access token shared by every bot process: wechatpy's session storage in the database, and the leader's
job that keeps the token fresh.

WeChat hands out one valid access token per account at a time (a new fetch leaves the old one usable for about
five minutes), and at most 2,000 fetches a day. So only the leading process fetches (`runtime.leader`; on SQLite
the one process always leads): ahead of expiry, on its job (and as it takes the lead), or at once when it needs
one and none is valid. Any other process reads the token from the database (kept in memory for a minute at most,
and never past its expiry); when none is valid it asks for one (a refused row) and waits a bounded time for the
leader to write it, then gives up with `TokenUnavailable` (errcode -1, 'busy': the outbox tries the push again
later).

The storage is called from worker threads only (wechatpy is synchronous): each database call goes to the event
loop with `asyncio.run_coroutine_threadsafe` and waits for it there.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from wechatpy.exceptions import WeChatClientException
from wechatpy.session import SessionStorage

from storage.db.database import Database
from storage.wechat_session import SessionValue

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_TTL_SECONDS = 7200
"""What WeChat's cgi-bin/token gives a token (its `expires_in`), when an answer says nothing."""
USABLE_MARGIN_SECONDS = 60
"""A token this close to its expiry is not handed out any more (wechatpy's own margin)."""
REFRESH_AHEAD_SECONDS = 600
"""The leader fetches a new token when the stored one has less than this left."""
REFRESH_EVERY_SECONDS = 10
"""How often the leader's job looks at the stored token (one read of one row): a follower waiting for a token
has one within about this long."""
RETRY_AFTER_FAILURE_SECONDS = 60
"""After a failed fetch the job waits this long before the next (WeChat counts fetches against a daily quota)."""
CACHED_SECONDS = 60.0
"""How long a process trusts the token it read before reading the database again."""
WAIT_SECONDS = 15.0
"""How long a follower waits for the leader to write a valid token (longer than the job's period)."""
POLL_SECONDS = 0.25
CALL_TIMEOUT_SECONDS = 10.0
"""A database call from a worker thread that takes longer fails (the caller's request fails, and is retried)."""


class TokenUnavailable(WeChatClientException):  # type: ignore[misc]
    """No valid access token arrived from the leading process in time; errcode -1 is WeChat's 'system busy'."""

    def __init__(self, detail: str) -> None:
        super().__init__(-1, detail)


class SharedSession(SessionStorage):  # type: ignore[misc]
    """wechatpy's SessionStorage on the `wechat_session` table, with a short in-process cache."""

    def __init__(
        self, db: Database, loop: asyncio.AbstractEventLoop, now: Callable[[], int], *,
        cached_seconds: float = CACHED_SECONDS, call_timeout: float = CALL_TIMEOUT_SECONDS,
    ) -> None:  # fmt: skip
        self.db = db
        self.loop = loop
        self.now = now
        self.cached_seconds = cached_seconds
        self.call_timeout = call_timeout
        self._cache: dict[str, tuple[SessionValue, float]] = {}
        self._lock = threading.Lock()

    def _run(self, coro: Callable[[], Awaitable[T]]) -> T:
        """Run `coro()` on the event loop and wait for it here (a worker thread, never the loop's own)."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self.loop:
            raise RuntimeError("the shared WeChat session is for worker threads, not the event loop")

        async def call() -> T:
            return await coro()

        return asyncio.run_coroutine_threadsafe(call(), self.loop).result(self.call_timeout)

    # --- reads ---------------------------------------------------------------------------------------
    def stored(self, key: str) -> SessionValue | None:
        """The stored row, read from the database now (not the cache)."""

        async def read() -> SessionValue | None:
            async with self.db.read() as repos:
                return await repos.wechat_session.get(key)

        value = self._run(read)
        with self._lock:
            if value is not None and self.usable(value):
                self._cache[key] = (value, time.monotonic())
            else:
                self._cache.pop(key, None)
        return value

    def usable(self, value: SessionValue) -> bool:
        return bool(value.value) and value.expires_at - self.now() > USABLE_MARGIN_SECONDS

    def get(self, key: str, default: Any = None) -> Any:
        """The value while it is usable (cached for a short while), else `default`."""
        with self._lock:
            cached = self._cache.get(key)
        if cached is not None:
            value, read_at = cached
            if time.monotonic() - read_at < self.cached_seconds and self.usable(value):
                return value.value
        value = self.stored(key)
        return value.value if value is not None and self.usable(value) else default

    # --- writes --------------------------------------------------------------------------------------
    def set(self, key: str, value: Any, ttl: int | None = None) -> None:
        if value is None:
            return
        stored = SessionValue(str(value), self.now() + int(ttl or DEFAULT_TTL_SECONDS))

        async def write() -> None:
            async with self.db.transaction() as repos:
                await repos.wechat_session.put(key, stored.value, stored.expires_at)

        self._run(write)
        with self._lock:
            self._cache[key] = (stored, time.monotonic())

    def delete(self, key: str) -> None:
        async def write() -> None:
            async with self.db.transaction() as repos:
                await repos.wechat_session.delete(key)

        self._run(write)
        with self._lock:
            self._cache.pop(key, None)

    def refuse(self, key: str, value: str | None) -> None:
        """WeChat refused `value` (or no token is stored yet, `None`): mark it so the leader replaces it. A newer
        token stored meanwhile stays; a missing row becomes a request for one."""

        async def write() -> None:
            async with self.db.transaction() as repos:
                if value is None or not await repos.wechat_session.refuse(key, value):
                    await repos.wechat_session.request(key)

        self._run(write)
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and (value is None or cached[0].value == value):
                self._cache.pop(key, None)

    def wait_for(self, key: str, other_than: str | None, seconds: float, poll: float = POLL_SECONDS) -> str:
        """A usable token other than `other_than`, as soon as the leader stores one; TokenUnavailable after
        `seconds`."""
        deadline = time.monotonic() + seconds
        while True:
            value = self.stored(key)
            if value is not None and self.usable(value) and value.value != other_than:
                return value.value
            if time.monotonic() >= deadline:
                raise TokenUnavailable(f"no valid access token from the leading process within {seconds:.0f} s")
            time.sleep(poll)


class TokenKeeper:
    """The leader's job: fetch a new token when the stored one is near its expiry, or refused, or asked for."""

    def __init__(self, client: Any, session: SharedSession, leading: Callable[[], bool]) -> None:
        self.client = client
        self.session = session
        self.leading = leading
        self._failed_at: float | None = None

    async def refresh(self) -> bool:
        """Whether a new token was fetched now. Nothing happens on a follower, or while no token was ever
        needed (no row: the first use fetches it)."""
        if not self.leading():
            return False
        if self._failed_at is not None and time.monotonic() - self._failed_at < RETRY_AFTER_FAILURE_SECONDS:
            return False
        async with self.session.db.read() as repos:
            stored = await repos.wechat_session.get(self.client.access_token_key)
        if stored is None or (stored.value and stored.expires_at - self.session.now() > REFRESH_AHEAD_SECONDS):
            return False
        try:
            fetched = await asyncio.to_thread(self.client.renew_access_token, REFRESH_AHEAD_SECONDS)
        except Exception as exc:
            self._failed_at = time.monotonic()
            log.warning("wechat: could not fetch a new access token: %s", exc)
            return False
        self._failed_at = None
        return fetched is not None
