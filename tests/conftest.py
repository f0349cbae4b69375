"""Shared fixtures: a network guard, settings on a temporary database (a copy of one migrated per session),
a fake clock, a chat driver.

The engine under test is SQLite unless `VIPBOT_TEST_ENGINE=postgresql` (read at import, before the tests' clean
environment): then `settings` (and so `runtime`, `chat`, ...) names a scratch PostgreSQL database of its own per
test, a copy of a template migrated once per session (per xdist worker), on the server `tests.pg` uses; tests
marked `sqlite_only` (they open the SQLite file itself: sqlite3, WAL, backup, the lock file) are skipped.
A test that builds its own Settings names its databases by path with `storage_for(tmp_path / "x.db")` (or
`storage_env` for a `vipbot run` process), which gives the same on the engine under test. `make test` runs the
suite on both engines (tests/run_engines.sh).
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from bot.app.config import Settings
from bot.app.runtime import Runtime
from handlers.core import i18n
from handlers.core.clock import FakeClock
from handlers.core.messages import Identity, Inbound, Reply
from handlers.core.roles import Role
from storage.db.database import Database

SHANGHAI = ZoneInfo("Asia/Shanghai")
ENGINE = (os.environ.get("VIPBOT_TEST_ENGINE") or "sqlite").strip().lower()
"""The engine the suite runs on: "sqlite" (default) or "postgresql"."""
if ENGINE not in ("sqlite", "postgresql"):
    raise pytest.UsageError(f"VIPBOT_TEST_ENGINE={ENGINE!r}: use sqlite or postgresql")
ON_POSTGRES = ENGINE == "postgresql"


def pytest_report_header(config: pytest.Config) -> str:
    if not ON_POSTGRES:
        return "vipbot storage engine: sqlite"
    from tests import pg

    return f"vipbot storage engine: postgresql at {pg.redacted(pg.POSTGRES_URL)}"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not ON_POSTGRES:
        return
    for item in items:
        marker = item.get_closest_marker("sqlite_only")
        if marker is not None:
            why = marker.args[0] if marker.args else "opens the SQLite file itself"
            item.add_marker(pytest.mark.skip(reason=f"SQLite only ({why}); the engine is PostgreSQL"))
_LOCAL_HOSTS = {"127.0.0.1", "::1", "localhost", "0.0.0.0", ""}


def _is_local(address: Any) -> bool:
    if isinstance(address, (str, bytes)):  # unix socket path
        return True
    host = address[0] if isinstance(address, tuple) else address
    return host in _LOCAL_HOSTS or str(host).startswith("127.")


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fail any test that tries to reach beyond this machine."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex
    real_getaddrinfo = socket.getaddrinfo

    def connect(self: socket.socket, address: Any) -> Any:
        if not _is_local(address):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> Any:
        if not _is_local(address):
            raise RuntimeError(f"test tried to reach the network: {address!r}")
        return real_connect_ex(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None and not _is_local((host.decode() if isinstance(host, bytes) else host, 0)):
            raise RuntimeError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    yield


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never pick up the developer's own bot credentials or overrides."""
    import os

    for name in list(os.environ):
        if name.startswith("VIPBOT_") or name in ("TELEGRAM_BOT_TOKEN", "TELEGRAM_WEBHOOK_SECRET"):
            monkeypatch.delenv(name)


def local(*args: int) -> datetime:
    """An instant given as Shanghai wall-clock time."""
    return datetime(*args, tzinfo=SHANGHAI)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(local(2026, 3, 10, 9, 0))


@pytest.fixture(scope="session", autouse=True)
def parsed_catalogs() -> Iterator[None]:
    """Each locale's YAML is parsed once per session, not for every Settings and Runtime a test builds (the
    catalogs are package data: they do not change while the tests run). Each caller gets its own copy."""
    parsed: dict[str, dict[str, str]] = {}
    real = i18n.load_catalog

    def load_catalog(locale: str) -> dict[str, str]:
        if locale not in parsed:
            parsed[locale] = real(locale)
        return dict(parsed[locale])

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(i18n, "load_catalog", load_catalog)
        yield


@pytest.fixture(scope="session")
def migrated_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database with every migration applied, made once per session (per worker under xdist)."""
    path = tmp_path_factory.mktemp("template") / "vip.db"

    async def migrate() -> None:
        db = await Database.open(path)
        await db.close()  # checkpoints the WAL into the file: the .db alone is the whole database

    asyncio.run(migrate())
    return path


class _ScratchDatabases:
    """On PostgreSQL: copies of a migrated template, one per test. CREATE DATABASE ... TEMPLATE takes a tenth of a
    second, DROP DATABASE waits for a checkpoint (seconds on a busy server), so `SPARES` copies are made ahead in
    background threads while the tests run, and the used ones are dropped on threads of their own (a slow drop
    does not hold up the next copy)."""

    SPARES = 3
    DROPPERS = 6
    """Each DROP DATABASE waits for a checkpoint of its own; drops that run at the same time share one."""

    def __init__(self, template: str) -> None:
        from collections import deque
        from concurrent.futures import Future, ThreadPoolExecutor

        self.template = template
        self._copies = ThreadPoolExecutor(max_workers=self.SPARES, thread_name_prefix="pg-scratch-copy")
        self._drops = ThreadPoolExecutor(max_workers=self.DROPPERS, thread_name_prefix="pg-scratch-drop")
        self._spares: deque[Future[str]] = deque(self._copies.submit(self._create) for _ in range(self.SPARES))

    def _create(self) -> str:
        from tests import pg

        return asyncio.run(pg.create_database(self.template))

    @staticmethod
    def _drop(db_url: str) -> None:
        from tests import pg

        asyncio.run(pg.drop_database(db_url))

    def take(self) -> str:
        db_url = self._spares.popleft().result()
        self._spares.append(self._copies.submit(self._create))
        return db_url

    def give_back(self, db_url: str) -> None:
        self._drops.submit(self._drop, db_url)

    def close(self) -> None:
        from tests import pg

        for spare in self._spares:
            self._drops.submit(lambda spare=spare: self._drop(spare.result()))
        self._copies.shutdown(wait=True)
        self._drops.shutdown(wait=True)
        self._drop(pg.with_database(pg.POSTGRES_URL, self.template))


@pytest.fixture(scope="session")
def pg_scratch() -> Iterator[_ScratchDatabases]:
    """On PostgreSQL: the session's scratch databases, copies of a template migrated once per session (per xdist
    worker), all dropped at the end. The run fails when the server is not reachable (the engine was asked for)."""
    from tests import pg

    reason = pg.skip_reason()
    if reason is not None:
        pytest.fail(f"VIPBOT_TEST_ENGINE=postgresql but {reason}", pytrace=False)
    scratch = _ScratchDatabases(asyncio.run(pg.migrated_template_name()))
    try:
        yield scratch
    finally:
        scratch.close()


class Storages:
    """The databases of one test, each named by the SQLite path the test gives it. On SQLite the path is the
    database (a copy of the migrated template when the file does not exist yet); on PostgreSQL each distinct path
    gets a scratch database of its own, the same one each time the test names that path again (a restart sees
    the data), dropped after the test."""

    def __init__(self, request: pytest.FixtureRequest) -> None:
        self._urls: dict[str, str] = {}
        # The session's template, made now, outside the test's event loop (it runs one of its own).
        self._scratch: _ScratchDatabases | None = request.getfixturevalue("pg_scratch") if ON_POSTGRES else None
        self._migrated: Path | None = None if ON_POSTGRES else request.getfixturevalue("migrated_db")

    def url(self, path: Path | str) -> str:
        """The `storage.url` for `path`: empty on SQLite, on PostgreSQL its scratch database."""
        if self._scratch is None:
            return ""
        key = str(path)
        if key not in self._urls:
            self._urls[key] = self._scratch.take()
        return self._urls[key]

    def settings(self, path: Path | str, *, fresh: bool = False, **extra: Any) -> dict[str, Any]:
        """The `storage` section for the database `path` names, with `extra` keys (readers, loop_statement_ms).
        On SQLite a new file is a copy of the migrated template unless `fresh` (then the bot creates it)."""
        storage: dict[str, Any] = {"path": str(path), **extra}
        url = self.url(path)
        if url:
            storage["url"] = url
        elif self._migrated is not None and not fresh and not Path(path).exists() and Path(path).parent.is_dir():
            shutil.copy(self._migrated, path)
        return storage

    def env(self, path: Path | str) -> dict[str, str]:
        """The same as environment variables, for a `vipbot run` started as a process (on SQLite it creates the
        file itself, as at a shop's first start)."""
        storage = self.settings(path, fresh=True)
        return {f"VIPBOT_STORAGE__{key.upper()}": str(value) for key, value in storage.items()}

    def close(self) -> None:
        for url in self._urls.values():
            if self._scratch is not None:
                self._scratch.give_back(url)
        self._urls.clear()


_storage: Storages | None = None


@pytest.fixture(autouse=True)
def storages(request: pytest.FixtureRequest) -> Iterator[Storages]:
    """This test's databases (see `storage_for`)."""
    global _storage
    storage = _storage = Storages(request)
    try:
        yield storage
    finally:
        _storage = None
        storage.close()


def storage_for(path: Path | str, **extra: Any) -> dict[str, Any]:
    """The `storage` settings of the running test's database named `path`, on the engine under test: on SQLite
    the file (a copy of the migrated template when new), on PostgreSQL a scratch database of its own for that
    path. For tests that build their own Settings: `Settings(storage=storage_for(tmp_path / "x.db"))`."""
    if _storage is None:
        raise RuntimeError("storage_for is for use inside a test")
    return _storage.settings(path, **extra)


def storage_env(path: Path | str) -> dict[str, str]:
    """`storage_for(path)` as `VIPBOT_STORAGE__*` environment variables, for a `vipbot run` subprocess."""
    if _storage is None:
        raise RuntimeError("storage_env is for use inside a test")
    return _storage.env(path)


@pytest.fixture
def storage_url(tmp_path: Path, storages: Storages) -> str:
    """The `storage.url` of this test's database (`tmp_path / "vip.db"`, the one `settings` names): empty on
    SQLite (`storage.path` names the file), on PostgreSQL a fresh migrated database of its own."""
    return storages.url(tmp_path / "vip.db")


@pytest.fixture
def settings(tmp_path: Path, storages: Storages) -> Settings:
    # loop_statement_ms: a statement not marked bulk that runs 200 ms on the event loop fails the test.
    return Settings(locale="en", storage=storages.settings(tmp_path / "vip.db", loop_statement_ms=200))


@pytest.fixture
async def runtime(settings: Settings, clock: FakeClock) -> AsyncIterator[Runtime]:
    rt = await Runtime.open(settings, clock)
    yield rt
    await rt.close()


@dataclass
class TestPort:
    """The channel side of the dispatcher for unit tests: who is staff (with which role), which chats are VIP."""

    staff: set[str] = field(default_factory=lambda: {"boss"})
    """Staff with every right (owners)."""
    roles: dict[str, Role] = field(default_factory=dict)
    """Other staff and their roles (`roles["carl"] = Role.CASHIER`); a name here wins over `staff`."""
    non_vip_chats: set[str] = field(default_factory=set)
    outsiders: set[str] = field(default_factory=set)
    """Users who are not in any VIP group."""
    bot_username: str | None = "vipbot"

    def is_vip_chat(self, msg: Inbound) -> bool:
        return msg.chat_id not in self.non_vip_chats

    async def role_of(self, msg: Inbound) -> Role | None:
        who = msg.sender.external_id
        return self.roles.get(who) or (Role.OWNER if who in self.staff else None)

    async def is_group_member(self, msg: Inbound) -> bool:
        return msg.sender.external_id not in self.outsiders


@dataclass
class ChatDriver:
    """Sends text as a named user through the real dispatcher and returns the reply texts."""

    runtime: Runtime
    port: TestPort = field(default_factory=TestPort)
    channel: str = "test"
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def inbound(
        self,
        who: str,
        text: str,
        *,
        group: bool = True,
        chat: str | None = None,
        reply_to: str | None = None,
        key: str | None = None,
    ) -> Inbound:
        n = next(self._ids)
        return Inbound(
            channel=self.channel,
            chat_id=chat or ("group" if group else f"dm-{who}"),
            sender=Identity(self.channel, who, who.title(), who),
            text=text,
            is_group=group,
            key=key or f"{self.channel}:{n}",
            message_id=str(n),
            reply_to=Identity(self.channel, reply_to, reply_to.title(), reply_to) if reply_to else None,
        )

    async def replies(self, who: str, text: str, **kwargs: Any) -> list[Reply]:
        return await self.runtime.dispatcher.handle(self.inbound(who, text, **kwargs), self.port)

    async def say(self, who: str, text: str, **kwargs: Any) -> str:
        """All reply texts joined by newlines ('' when the bot stays silent)."""
        return "\n".join(r.text for r in await self.replies(who, text, **kwargs))


@pytest.fixture
def chat(runtime: Runtime) -> ChatDriver:
    return ChatDriver(runtime)


@dataclass
class RecordingPusher:
    """The test channel's pusher: records every push; `script` can make a target fail or retry."""

    channel: str = "test"
    per_second: float = 10_000.0
    has_staff_chat: bool = True
    pushes: list[tuple[str, str, str]] = field(default_factory=list)
    buttons: list[tuple[str, ...]] = field(default_factory=list)
    script: dict[str, list[Any]] = field(default_factory=dict)
    """target -> PushResults to answer in turn before succeeding."""

    def chat_interval(self, target_kind: str, target: str) -> float:
        return 0.0

    edits: list[tuple[str, str, str]] = field(default_factory=list)

    images: list[bytes] = field(default_factory=list)
    polls: list[Any] = field(default_factory=list)

    async def push(self, target_kind: str, target: str, text: str, buttons: Any, **extra: Any) -> Any:
        from bot.delivery.outbox import Outcome, PushResult

        planned = self.script.get(target)
        if planned:
            return planned.pop(0)
        self.pushes.append((target_kind, target, text))
        self.buttons.append(tuple(b.data for b in buttons))
        if extra.get("image") is not None:
            self.images.append(extra["image"])
        native = None
        if extra.get("poll") is not None:
            self.polls.append(extra["poll"])
            native = f"native-{len(self.polls)}"
        return PushResult(Outcome.SENT, message_id=str(len(self.pushes)), native_poll_id=native)

    async def edit(self, chat_id: str, message_id: str, text: str, buttons: Any) -> bool:
        self.edits.append((chat_id, message_id, text))
        return True

    def to(self, target: str) -> list[str]:
        return [text for _, t, text in self.pushes if t == target]


@pytest.fixture
async def pusher(runtime: Runtime) -> AsyncIterator[RecordingPusher]:
    """Registers a recording pusher for the 'test' channel and runs the outbox (no APScheduler)."""
    recorder = RecordingPusher()
    runtime.outbox.register(recorder)
    await runtime.outbox.start()
    yield recorder
    await runtime.outbox.stop()


async def settle(runtime: Runtime) -> None:
    """Let the outbox send everything that is due now (30 s is a bound, not a wait: a test's 1,000 pushes take
    seconds on PostgreSQL on a busy machine)."""
    assert await runtime.outbox.idle(timeout=30), "outbox did not drain"


from tests.chart_recorders import bars, weekly  # noqa: E402, F401 - the chart tests' fixtures
