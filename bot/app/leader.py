"""Which process leads: the one that runs the scheduler, drains the outbox, edits live posts, refreshes tokens
and handles Telegram's updates. Every process answers webhooks.

On SQLite there is one process per database file (`storage.db.instance`), and it leads from its start
(`SoleLeadership`). On PostgreSQL any number of `vipbot run` processes share the database and exactly one leads
at a time (`PostgresLeadership`): the holder of a session advisory lock on a connection of its own. The others
try for it every `check_seconds`; PostgreSQL drops the lock when the leader's connection ends (the process exits
or is killed: the kernel closes its socket), so another takes over within about that interval. A leader that
loses its connection (PostgreSQL restarted, the network) can no longer know it still leads: it stops leading at
once by telling the runtime to stop (`on_lost`), and its supervisor starts it again as a follower. A leader cut
off without noticing is dropped by PostgreSQL within the keepalive time (`KEEPALIVE`), and every job that sends
has an idempotency key, so two leaders for that moment send nothing twice.

The same connection carries the NOTIFY wake-ups between processes (`notify`, `listen`): rows queued for the
outbox, updates stored for the leader to handle, announcements planned.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Protocol, TypeVar

log = logging.getLogger(__name__)

LEADER_LOCK = 0x7669_7062_6F76
"""The session advisory lock the leading process holds ('vipbow': beside the migration lock)."""
CHECK_SECONDS = 1.0
"""How often a follower tries for the lock, and a leader checks its connection."""
CONNECT_TIMEOUT_SECONDS = 5.0
KEEPALIVE = {"tcp_keepalives_idle": "5", "tcp_keepalives_interval": "2", "tcp_keepalives_count": "2"}
"""PostgreSQL drops the session (and with it the lock) of a leader that went silent after about 9 s."""
CHANNELS = ("vipbot_outbox", "vipbot_inbox", "vipbot_plan")
"""The NOTIFY channels: rows queued for the outbox, updates stored for the leader, announcements planned."""

Hook = Callable[[], Awaitable[None]]
T = TypeVar("T")


def process_name() -> str:
    """This process as the others see it: 'vipbot <pid>@<host>' (PostgreSQL's application_name: at most 63)."""
    return f"vipbot {os.getpid()}@{socket.gethostname()}"[:63]


class Leadership(Protocol):
    name: str
    """This process's name."""
    shared: bool
    """Other processes may use the database too."""

    @property
    def leading(self) -> bool: ...

    async def start(self, on_lead: Hook, on_lost: Callable[[], None]) -> None:
        """Try for the lead at once (and keep trying): `on_lead` runs when this process becomes leader, `on_lost`
        when it stops being one without being asked to."""
        ...

    async def stop(self) -> None: ...

    async def holder(self) -> str | None:
        """The leading process's name, or None when none leads (or it cannot be known)."""
        ...

    def notify(self, channel: str) -> None:
        """Wake the other processes listening on `channel` (one of CHANNELS)."""
        ...

    def listen(self, channel: str, callback: Callable[[], None]) -> None:
        """Call `callback` when another process notifies `channel`."""
        ...


class SoleLeadership:
    """The only process on its database (SQLite, held by `storage.db.instance`): it leads from the start."""

    shared = False

    def __init__(self, name: str | None = None) -> None:
        self.name = name or process_name()
        self._leading = True

    @property
    def leading(self) -> bool:
        return self._leading

    async def start(self, on_lead: Hook, on_lost: Callable[[], None]) -> None:
        self._leading = True
        await on_lead()

    async def stop(self) -> None:
        self._leading = False

    async def holder(self) -> str | None:
        return self.name if self._leading else None

    def notify(self, channel: str) -> None:
        """Nobody else to wake."""

    def listen(self, channel: str, callback: Callable[[], None]) -> None:
        """Nobody else notifies."""


class PostgresLeadership:
    """One leader among the processes on a PostgreSQL database, by a session advisory lock (see the module).

    The lock's connection lives on a thread of its own, with its own event loop: taking the lead, noticing a lost
    connection and the NOTIFYs never wait for the main loop, which a burst of webhooks can keep busy for seconds
    (a follower then still takes over within `check_seconds`). What the lead starts (`on_lead`), `on_lost` and the
    listeners run on the main loop."""

    shared = True

    def __init__(self, url: str, *, name: str | None = None, check_seconds: float = CHECK_SECONDS) -> None:
        self.url = url
        self.name = name or process_name()
        self.check_seconds = check_seconds
        self._leading = False
        self._stopping = False
        self._listeners: dict[str, list[Callable[[], None]]] = {}
        self._on_lead: Hook | None = None
        self._on_lost: Callable[[], None] | None = None
        self._main: asyncio.AbstractEventLoop | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        """The leadership thread's loop; its connection and every statement on it belong there."""
        self._thread: threading.Thread | None = None
        self._conn: object | None = None
        self._use: asyncio.Lock | None = None
        """One statement at a time on the connection (asyncpg runs one operation per connection)."""
        self._watch: concurrent.futures.Future[None] | None = None
        self._leads: set[asyncio.Task[None]] = set()
        self.led_since: float | None = None
        """time.time() when this process became leader."""

    @property
    def leading(self) -> bool:
        return self._leading

    # --- on the main loop ------------------------------------------------------------------------------
    async def start(self, on_lead: Hook, on_lost: Callable[[], None]) -> None:
        """Connect and try for the lead once (becoming leader runs `on_lead` before this returns), then keep
        trying on the leadership thread. Raises when PostgreSQL cannot be reached at all."""
        self._on_lead, self._on_lost = on_lead, on_lost
        self._main = asyncio.get_running_loop()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="vipbot-leadership", daemon=True)
        self._thread.start()
        try:
            got = await self._there(self._first())
        except BaseException:
            await self._end_thread()
            raise
        if got:
            await self._lead()
        self._watch = asyncio.run_coroutine_threadsafe(self._watching(), self._loop)

    def _there(self, coro: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """Run `coro` on the leadership thread; await its result here."""
        assert self._loop is not None
        return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))

    async def _lead(self) -> None:
        assert self._on_lead is not None
        log.info("leadership: %s leads", self.name)
        await self._on_lead()

    def _took_lead(self) -> None:
        """On the main loop, once the thread took the lock."""
        task = asyncio.get_running_loop().create_task(self._lead())
        self._leads.add(task)
        task.add_done_callback(self._led)

    def _led(self, task: asyncio.Task[None]) -> None:
        self._leads.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.critical("leadership: starting what the leader runs failed; stopping", exc_info=task.exception())
            if self._on_lost is not None:
                self._on_lost()

    async def stop(self) -> None:
        """Give up the lead (closing the connection releases the lock at once) and stop trying."""
        self._stopping = True
        for task in list(self._leads):
            task.cancel()
        if self._loop is None:
            return
        if self._watch is not None:
            self._watch.cancel()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._there(self._close()), 5)
        self._leading = False
        await self._end_thread()

    async def _end_thread(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        await asyncio.to_thread(thread.join, 5)
        if not thread.is_alive():
            loop.close()
        self._loop = self._thread = None

    async def holder(self) -> str | None:
        if self._leading:
            return self.name
        if self._loop is None:
            return None
        try:
            return await asyncio.wait_for(self._there(self._holder()), 3)
        except Exception:
            return None

    def notify(self, channel: str) -> None:
        loop = self._loop
        if loop is None or self._stopping:
            return  # the leader's sweep finds the rows within SHARED_SWEEP_SECONDS
        asyncio.run_coroutine_threadsafe(self._notify(channel), loop)

    def listen(self, channel: str, callback: Callable[[], None]) -> None:
        if channel not in CHANNELS:
            raise ValueError(f"unknown NOTIFY channel {channel!r}")
        self._listeners.setdefault(channel, []).append(callback)

    def _notified(self, _conn: object, _pid: int, channel: str, _payload: str) -> None:
        """On the leadership thread: hand the NOTIFY to the main loop's listeners."""
        main = self._main
        if main is None or main.is_closed():
            return
        for callback in self._listeners.get(channel, ()):
            main.call_soon_threadsafe(_guarded, callback, channel)

    # --- on the leadership thread --------------------------------------------------------------------------
    async def _connect(self) -> object:
        import asyncpg  # only with PostgreSQL

        conn = await asyncpg.connect(
            self.url, timeout=CONNECT_TIMEOUT_SECONDS,
            server_settings={"application_name": self.name, **KEEPALIVE},
        )  # fmt: skip
        for channel in CHANNELS:
            await conn.add_listener(channel, self._notified)
        return conn

    async def _first(self) -> bool:
        self._use = asyncio.Lock()
        self._conn = await self._connect()
        return await self._try()

    async def _try(self) -> bool:
        """Try for the lock once; True when this process took it (and now leads)."""
        conn = self._conn
        assert conn is not None and self._use is not None
        async with self._use:
            got = await conn.fetchval("SELECT pg_try_advisory_lock($1)", LEADER_LOCK)  # type: ignore[attr-defined]
        if got:
            self._leading = True
            self.led_since = time.time()
        return bool(got)

    async def _watching(self) -> None:
        while not self._stopping:
            await asyncio.sleep(self.check_seconds)
            try:
                conn = self._conn
                if conn is None or conn.is_closed():  # type: ignore[attr-defined]
                    raise ConnectionError("the leadership connection closed")
                if self._leading:
                    assert self._use is not None
                    async with self._use:
                        await asyncio.wait_for(conn.fetchval("SELECT 1"), self.check_seconds * 3)  # type: ignore[attr-defined]
                elif await self._try():
                    assert self._main is not None
                    self._main.call_soon_threadsafe(self._took_lead)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self._stopping:
                    return
                if await self._lost(exc):
                    return

    async def _lost(self, exc: BaseException) -> bool:
        """The connection failed: a leader stops leading (True: the watch ends), a follower reconnects."""
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.terminate()  # type: ignore[attr-defined]
        if self._leading:
            self._leading = False
            log.critical("leadership: lost the connection that held the lead (%s); stopping so that another process "
                         "leads (the supervisor starts this one again)", exc)  # fmt: skip
            if self._on_lost is not None and self._main is not None:
                self._main.call_soon_threadsafe(self._on_lost)
            return True
        log.warning("leadership: connection lost (%s); reconnecting", exc)
        try:
            self._conn = await self._connect()
        except Exception as again:
            log.warning("leadership: cannot reconnect yet: %s", again)
        return False

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2)  # type: ignore[attr-defined]

    async def _holder(self) -> str | None:
        conn = self._conn
        if conn is None or self._use is None:
            return None
        async with self._use:
            name = await conn.fetchval(  # type: ignore[attr-defined]
                "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                " WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1 AND l.objid = $2 AND l.objsubid = 1"
                " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (LEADER_LOCK >> 32) & 0xFFFFFFFF, LEADER_LOCK & 0xFFFFFFFF,
            )  # fmt: skip
        return str(name) if name is not None else None

    async def _notify(self, channel: str) -> None:
        conn = self._conn
        if conn is None or self._use is None:
            return
        try:
            async with self._use:
                await conn.execute(f"NOTIFY {channel}")  # type: ignore[attr-defined]
        except Exception as exc:
            log.debug("NOTIFY %s failed: %s", channel, exc)


def _guarded(callback: Callable[[], None], channel: str) -> None:
    try:
        callback()
    except Exception:
        log.exception("a NOTIFY %s listener failed", channel)
