"""WeChat with several bot processes on one database (PostgreSQL behind a load balancer; here two runtimes on
one database, each with its own web server): a retry that lands on another worker gets the first attempt's
answer and nothing is booked twice, a retry while the first attempt still works waits for it, a worker that dies
mid-way leaves the message to the retry, a late answer goes out once; and one access token for all workers,
fetched by the leader only.

Each test runs on SQLite (two runtimes on one file) and on PostgreSQL where the engine's concurrency is what the
test is about; the leader is a stand-in (`runtime.leader.leading`) until the runtime has its own."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from bot.app.config import Settings
from bot.app.leader import Hook, SoleLeadership
from bot.app.runtime import Runtime
from bot.app.web import WebServer
from bot.wechat.channel import WeChatChannel
from bot.wechat.tokens import TokenUnavailable
from handlers.core.clock import FakeClock
from tests.fakes.wechat_api import FakeWeChatApi, answer_text
from tests.pg import pg_template, pg_url  # noqa: F401 - fixtures
from tests.test_wechat import APP_ID, TOKEN, handling_held, kept, signature, text_xml

ENGINES = ["sqlite", "postgresql"]
_nonces = itertools.count(1)


@dataclass
class Worker:
    runtime: Runtime
    channel: WeChatChannel
    web: WebServer
    http: httpx.AsyncClient

    async def post(self, xml: str, timestamp: str, nonce: str) -> str:
        """Post as WeChat does (a retry repeats the very request); the passive answer's text, '' for success."""
        params = {"signature": signature(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        response = await self.http.post("/wechat", params=params, content=xml.encode())
        assert response.status_code == 200, response.text
        return answer_text(response.text)

    async def close(self) -> None:
        await self.http.aclose()
        await self.web.stop()
        await self.channel.stop()
        await self.runtime.close()


@dataclass
class Shop:
    """Two workers on one database and the fake WeChat API; worker 1 leads."""

    engine: str
    storage: dict[str, Any]
    api: FakeWeChatApi
    clock: FakeClock
    workers: list[Worker]

    def request(self, xml: str) -> tuple[str, str, str]:
        return xml, str(int(self.clock.now().timestamp())), f"n{next(_nonces)}"

    async def ledger(self) -> tuple[int, int]:
        async with self.workers[0].runtime.deps.db.read() as repos:
            (row,) = await repos.conn.execute_fetchall("SELECT COUNT(*), COALESCE(SUM(delta), 0) FROM ledger")
        return int(row[0]), int(row[1])


def settings_for(storage: dict[str, Any], api: FakeWeChatApi, budget: float) -> Settings:
    return Settings(
        locale="en",
        storage=storage,
        wechat={"app_id": APP_ID, "token": TOKEN, "mode": "plain", "app_secret": "secret",
                "api_base_url": api.base_url, "reply_budget_seconds": budget},
        http={"host": "127.0.0.1", "port": 0},
        greetings={"enabled": False},
    )  # fmt: skip


class Following(SoleLeadership):
    """A second process on one SQLite file (tests only: `vipbot run` allows one) that never leads."""

    shared = True

    async def start(self, on_lead: Hook, on_lost: Callable[[], None]) -> None:
        self._leading = False


async def start_worker(settings: Settings, clock: FakeClock, *, leading: bool) -> Worker:
    """A bot process; on PostgreSQL the first one started takes the lead, on SQLite the second is `Following`."""
    runtime = await Runtime.open(settings, clock)
    if isinstance(runtime.leader, SoleLeadership):  # two processes on one file: they share it
        runtime.leader.shared = True  # type: ignore[misc]
        if not leading:
            runtime.leader = Following(runtime.leader.name)
    web = WebServer("127.0.0.1", 0, settings.http.max_body_bytes)
    channel = WeChatChannel(settings, runtime.dispatcher)
    await channel.attach(runtime, web)
    await web.start()
    await runtime.start()
    assert runtime.leader.leading is leading
    # The leader's token job runs every few seconds; the tests run it themselves, when they mean it to.
    runtime.scheduler.pause_job("wechat_access_token")
    assert runtime.scheduler.get_job("wechat_prune_answers") is not None
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}", timeout=30)
    return Worker(runtime, channel, web, http)


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def storage(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> dict[str, Any]:
    path = str(tmp_path / "workers.db")
    if engine == "sqlite":
        return {"path": path}
    return {"path": path, "url": request.getfixturevalue("pg_url")}


@pytest.fixture
async def shop_factory(
    engine: str, storage: dict[str, Any], clock: FakeClock
) -> AsyncIterator[Callable[..., Awaitable[Shop]]]:
    api = await FakeWeChatApi().start()
    shops: list[Shop] = []

    async def make(budget: float = 4.0, second_budget: float | None = None) -> Shop:
        first = await start_worker(settings_for(storage, api, budget), clock, leading=True)
        second_settings = settings_for(storage, api, budget if second_budget is None else second_budget)
        second = await start_worker(second_settings, clock, leading=False)
        shops.append(Shop(engine, storage, api, clock, [first, second]))
        return shops[-1]

    try:
        yield make
    finally:
        for shop in shops:
            for worker in shop.workers:
                with contextlib.suppress(Exception):
                    await worker.close()
        await api.stop()


@contextlib.asynccontextmanager
async def database_held(shop: Shop) -> AsyncIterator[None]:
    """Hold up the workers' handling: on PostgreSQL the check-in table is locked against inserts (a worker
    stops inside its transaction, the message already taken in the inbox); on SQLite the write lock is taken by
    another connection (a worker waits for it before its transaction)."""
    if shop.engine == "postgresql":
        conn = await asyncpg.connect(shop.storage["url"])
        try:
            transaction = conn.transaction()
            await transaction.start()
            await conn.execute("LOCK TABLE checkins IN SHARE MODE")
            yield
            await transaction.rollback()
        finally:
            await conn.close()
        return
    conn = sqlite3.connect(shop.storage["path"], isolation_level=None, check_same_thread=False)
    try:
        conn.execute("BEGIN IMMEDIATE")
        yield
        conn.execute("ROLLBACK")
    finally:
        conn.close()


@contextlib.asynccontextmanager
async def handlers_held(shop: Shop) -> AsyncIterator[None]:
    """Every worker's handling waits until the block ends; the database stays free, so the messages' nonce
    bindings (which keep them) go through, as WeChat must have them before it is told `success`."""
    async with contextlib.AsyncExitStack() as stack:
        for worker in shop.workers:
            await stack.enter_async_context(handling_held(worker.runtime.dispatcher))
        yield


@contextlib.asynccontextmanager
async def inbox_row_held(shop: Shop, key: str) -> AsyncIterator[None]:
    """Keep the workers from the message `key` for the block: on PostgreSQL its inbox row is locked (a retry's
    claim waits for it), on SQLite the workers' handling waits (`handlers_held`)."""
    if shop.engine != "postgresql":
        async with handlers_held(shop):
            yield
        return
    conn = await asyncpg.connect(shop.storage["url"])
    try:
        transaction = conn.transaction()
        await transaction.start()
        assert await conn.fetchval("SELECT COUNT(*) FROM (SELECT 1 FROM inbox WHERE key = $1 FOR UPDATE) s", key)
        yield
        await transaction.rollback()
    finally:
        await conn.close()


async def until(condition: Callable[[], Awaitable[bool]], what: str, seconds: float = 20.0) -> None:
    """Wait for another process's (or thread's) progress, which no clock of ours drives."""
    deadline = asyncio.get_running_loop().time() + seconds
    while not await condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def both_waiting(shop: Shop) -> bool:
    """Both workers wait for the database: on PostgreSQL the first inside its transaction (at the check-in) and
    the retry at the message's inbox row; on SQLite both for the write lock."""
    if shop.engine == "postgresql":
        return await _lock_waiters(shop) == 2
    return all(worker.runtime.deps.db.writing for worker in shop.workers)


async def _lock_waiters(shop: Shop, like: str = "%") -> int:
    conn = await asyncpg.connect(shop.storage["url"])
    try:
        return int(await conn.fetchval(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND wait_event_type = 'Lock' AND query LIKE $1 AND pid <> pg_backend_pid()", like,
        ))  # fmt: skip
    finally:
        await conn.close()


async def test_a_retry_on_another_worker_gets_the_first_answer_and_books_once(
    shop_factory: Callable[..., Awaitable[Shop]],
) -> None:
    shop = await shop_factory()
    first, second = shop.workers
    request = shop.request(text_xml("o-ann", "签到", msg_id=5001))
    answer = await first.post(*request)
    assert "Checked in! +10 points" in answer
    assert await second.post(*request) == answer  # WeChat's retry, on the other worker
    assert await second.post(*request) == answer  # and its third try
    assert await shop.ledger() == (1, 10)
    assert "already checked in today" in await second.post(*shop.request(text_xml("o-ann", "签到")))


async def test_a_retry_on_another_worker_shows_the_same_choices_and_they_work_there(
    shop_factory: Callable[..., Awaitable[Shop]],
) -> None:
    shop = await shop_factory()
    first, second = shop.workers
    request = shop.request(text_xml("o-bea", "你好"))
    answer = await first.post(*request)
    assert "Reply 1: " in answer and "Reply 2: " in answer  # the menu and the one-tap ticket
    retried = await second.post(*request)
    assert retried == answer and retried.count("Reply 2: ") == 1
    assert "#1" in await second.post(*shop.request(text_xml("o-bea", "2")))  # the ticket, chosen on worker 2
    async with second.runtime.deps.db.read() as repos:
        (row,) = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM tickets")
    assert row[0] == 1


async def test_a_retry_while_the_first_attempt_still_works_gets_its_answer(
    shop_factory: Callable[..., Awaitable[Shop]],
) -> None:
    shop = await shop_factory(budget=4.5)
    first, second = shop.workers
    request = shop.request(text_xml("o-cal", "签到", msg_id=5002))
    async with database_held(shop):
        attempt = asyncio.ensure_future(first.post(*request))
        await until(lambda: _writing(first), "the first attempt to start")
        retry = asyncio.ensure_future(second.post(*request))
        await until(lambda: both_waiting(shop), "the retry to wait")
    answers = await asyncio.gather(attempt, retry)
    assert "Checked in! +10 points" in answers[0] and answers[1] == answers[0]
    assert await shop.ledger() == (1, 10)
    assert shop.api.texts_to("o-cal") == []  # both answered in time: nothing went out late


async def _writing(worker: Worker) -> bool:
    return worker.runtime.deps.db.writing


async def test_a_late_answer_goes_out_once_from_whichever_attempt_claims_it(
    shop_factory: Callable[..., Awaitable[Shop]],
) -> None:
    shop = await shop_factory(budget=0.3)
    first, second = shop.workers
    await first.post(*shop.request(text_xml("o-dee", "积分")))  # opens the member's customer-service window
    await asyncio.to_thread(lambda: first.channel.client.access_token)  # the leader's token, for either sender
    request = shop.request(text_xml("o-dee", "签到", msg_id=5003))
    # On PostgreSQL the check-ins are locked (the first attempt waits inside its transaction); on SQLite, whose
    # one writer would hold up the bindings too, the handling itself waits.
    async with database_held(shop) if shop.engine == "postgresql" else handlers_held(shop):
        attempt = asyncio.ensure_future(first.post(*request))
        if shop.engine == "postgresql":
            await until(lambda: _writing(first), "the first attempt to start")
        retry = asyncio.ensure_future(second.post(*request))
        assert await asyncio.gather(attempt, retry) == ["", ""]  # 'success' from both: the budget ran out
    await until(lambda: _sent(shop, "o-dee"), "the late answer")
    for worker in shop.workers:
        await worker.channel.stop()  # every late delivery has finished
        assert await worker.runtime.outbox.idle()
    late = [t for t in shop.api.texts_to("o-dee") if "Checked in!" in t]
    assert len(late) == 1 and "+10 points" in late[0]
    assert await shop.ledger() == (1, 10)
    # A third try after the late answer went out is told 'success': the member has the answer already.
    assert await second.post(*request) == ""


async def test_the_retry_sends_the_answer_late_when_the_worker_that_handled_the_message_died_after_it(
    shop_factory: Callable[..., Awaitable[Shop]],
) -> None:
    """Worker 1 booked the check-in and stored the answer, then died before its HTTP answer left (and so before
    any late delivery). WeChat's retry lands on worker 2, which is too busy to answer within its budget: it says
    `success`, and then sends the stored answer through customer service, once."""
    from bot.wechat.channel import read_message

    shop = await shop_factory(budget=4.0, second_budget=0.001)
    first, second = shop.workers
    await first.post(*shop.request(text_xml("o-fay", "积分")))  # opens the member's customer-service window
    await asyncio.to_thread(lambda: first.channel.client.access_token)  # the leader's token, for either sender
    xml, timestamp, nonce = shop.request(text_xml("o-fay", "签到", msg_id=5005))
    handled = await first.channel.answer(read_message(xml))  # handled and committed; no answer ever left
    assert "Checked in! +10 points" in handled.text
    async with inbox_row_held(shop, read_message(xml).key):  # worker 2 is kept from the message past its budget
        assert await second.post(xml, timestamp, nonce) == ""  # the retry: 'success', the budget ran out
    await until(lambda: _sent(shop, "o-fay"), "the late answer from worker 2")
    assert await second.post(xml, timestamp, nonce) == ""  # WeChat's third try: nothing goes out twice
    await second.channel.stop()
    late = [t for t in shop.api.texts_to("o-fay") if "Checked in!" in t]
    assert late == [handled.text] or (len(late) == 1 and handled.text in late[0]), late
    assert await shop.ledger() == (1, 10)


async def test_an_attempt_that_finds_the_message_answered_by_a_retry_sends_nothing_late(
    shop_factory: Callable[..., Awaitable[Shop]],
) -> None:
    """A busy worker 1 took so long with the first attempt that WeChat retried on worker 2, which handled the
    message and answered in its HTTP response. Worker 1's attempt then finds it handled and missed its window:
    it must not send the answer again by customer service."""
    from bot.wechat.channel import read_message

    shop = await shop_factory()
    first, second = shop.workers
    await first.post(*shop.request(text_xml("o-gus", "积分")))  # opens the member's customer-service window
    await asyncio.to_thread(lambda: first.channel.client.access_token)
    xml, timestamp, nonce = shop.request(text_xml("o-gus", "签到", msg_id=5006))
    assert "Checked in! +10 points" in await second.post(xml, timestamp, nonce)  # the retry, handled first
    late = asyncio.ensure_future(first.channel.answer(read_message(xml)))  # the first attempt, finishing now
    await first.channel.deliver_late("o-gus", late)  # its window is gone: the late path decides
    assert "Checked in! +10 points" in (await late).text
    await first.channel.stop()
    assert [t for t in shop.api.texts_to("o-gus") if "Checked in!" in t] == []  # the member has it once
    assert await shop.ledger() == (1, 10)


async def test_the_leader_sends_an_answer_nobody_delivered_once(shop_factory: Callable[..., Awaitable[Shop]]) -> None:
    """Worker 2 booked a check-in and stored its answer, then died before answering, and WeChat's retries found
    no worker with room. Half a minute later the leader sends it late, once; an answer given in an HTTP
    response is never sent again."""
    from datetime import timedelta as span

    from bot.wechat.channel import UNDELIVERED_AFTER_SECONDS, read_message

    shop = await with_windows_open(await shop_factory(), "o-hal", "o-ida")
    first, second = shop.workers
    xml, _, _ = shop.request(text_xml("o-hal", "签到", msg_id=5007))
    lost = await second.channel.answer(read_message(xml))  # handled and committed; no answer ever left
    assert "Checked in! +10 points" in await first.post(*shop.request(text_xml("o-ida", "签到", msg_id=5008)))
    assert await first.channel.deliver_undelivered() == 0  # too early: WeChat may still retry
    shop.clock.advance(span(seconds=UNDELIVERED_AFTER_SECONDS + 1))
    assert await first.channel.deliver_undelivered() == 1
    assert await first.channel.deliver_undelivered() == 0  # claimed: never twice
    assert [t for t in shop.api.texts_to("o-hal") if "Checked in!" in t] == [lost.text]
    assert [t for t in shop.api.texts_to("o-ida") if "Checked in!" in t] == []  # it had its answer in time
    assert await shop.ledger() == (2, 20)


async def test_a_message_kept_by_a_worker_that_died_before_handling_it_is_handled_by_the_leader_once(
    shop_factory: Callable[..., Awaitable[Shop]],
) -> None:
    """Worker 2 bound the message's nonce, which keeps the message, and told WeChat `success` (its answer was
    late), then died before it committed anything. WeChat will not try again. A minute later the leader
    handles the kept message and sends its answer late, once; a message already handled is left alone."""
    from datetime import timedelta as span

    from bot.wechat.channel import RESUME_AFTER_SECONDS, read_message

    shop = await with_windows_open(await shop_factory(), "o-jay", "o-kim")
    first, second = shop.workers
    xml, timestamp, nonce = shop.request(text_xml("o-jay", "签到", msg_id=5010))
    await second.channel.bind_nonce(timestamp, nonce, xml, read_message(xml))  # then worker 2 died
    assert (await kept(first.runtime))[-1] == ("wechat:msg:o-jay:5010", xml, False)
    assert "Checked in! +10 points" in await first.post(*shop.request(text_xml("o-kim", "签到", msg_id=5011)))
    assert await first.channel.resume_kept() == 0  # too early: the worker that has it may still be at it
    shop.clock.advance(span(seconds=RESUME_AFTER_SECONDS - 5))
    assert await first.channel.resume_kept() == 0  # a swamped worker's backlog may still hold it
    shop.clock.advance(span(seconds=6))
    assert await first.channel.resume_kept() == 1
    assert await first.channel.resume_kept() == 0  # handled: never twice
    await first.channel.stop()
    assert len([t for t in shop.api.texts_to("o-jay") if "Checked in! +10 points" in t]) == 1
    assert [t for t in shop.api.texts_to("o-kim") if "Checked in!" in t] == []  # it had its answer in time
    assert await shop.ledger() == (2, 20)
    assert all(done for _, _, done in await kept(first.runtime))
    assert await second.post(xml, timestamp, nonce) == ""  # a late retry after all: nothing twice
    await second.channel.stop()
    assert len([t for t in shop.api.texts_to("o-jay") if "Checked in!" in t]) == 1
    assert await shop.ledger() == (2, 20)


async def test_the_leader_marks_a_kept_message_it_cannot_read_done_without_a_word(
    shop_factory: Callable[..., Awaitable[Shop]],
) -> None:
    """A kept row that is no message (or not the one its key names) is nobody's: the sweep marks it done once,
    sends nothing, and does not stumble over it again."""
    from datetime import timedelta as span

    from bot.wechat.channel import RESUME_AFTER_SECONDS

    shop = await shop_factory()
    first = shop.workers[0]
    now = int(shop.clock.now().timestamp())
    other = text_xml("o-max", "签到", msg_id=5014)
    async with first.runtime.deps.db.transaction() as repos:
        await repos.inbox.store_many("wechat", [("wechat:msg:o-lou:5013", "<xml>not a message"),
                                                ("wechat:msg:o-lou:5015", other)], now)  # fmt: skip
    shop.clock.advance(span(seconds=RESUME_AFTER_SECONDS + 1))
    assert await first.channel.resume_kept() == 0
    assert [done for _, _, done in await kept(first.runtime)] == [True, True]
    assert await first.channel.resume_kept() == 0
    await first.channel.stop()
    assert shop.api.texts_to("o-lou") == [] and shop.api.texts_to("o-max") == []
    assert await shop.ledger() == (0, 0)


async def with_windows_open(shop: Shop, *openids: str) -> Shop:
    """`shop` after each member wrote to it (their customer-service windows are open) and the leader has its
    access token, for either worker's late answers."""
    first = shop.workers[0]
    for openid in openids:
        await first.post(*shop.request(text_xml(openid, "积分")))
    await asyncio.to_thread(lambda: first.channel.client.access_token)
    return shop


async def _sent(shop: Shop, openid: str) -> bool:
    return any("Checked in!" in t for t in shop.api.texts_to(openid))


async def test_a_worker_that_dies_mid_way_leaves_the_message_to_the_retry(
    shop_factory: Callable[..., Awaitable[Shop]], engine: str
) -> None:
    if engine != "postgresql":
        pytest.skip("a worker killed inside its transaction: its PostgreSQL connection is terminated")
    shop = await shop_factory(budget=4.5)
    first, second = shop.workers
    request = shop.request(text_xml("o-eli", "签到", msg_id=5004))
    async with database_held(shop):
        attempt = asyncio.ensure_future(first.post(*request))
        await until(lambda: _waiting_on_checkins(shop), "the first attempt to take the message")
        retry = asyncio.ensure_future(second.post(*request))
        await until(lambda: both_waiting(shop), "the retry to wait")
        conn = await asyncpg.connect(shop.storage["url"])
        try:  # the first worker's process dies: its connection goes, its transaction rolls back
            killed = await conn.fetchval(
                "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity"
                " WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%checkins%'"
            )
        finally:
            await conn.close()
        assert killed == 1
        await until(lambda: _waiting_on_checkins(shop), "the retry to take the message over")
    answer = await retry
    assert "Checked in! +10 points" in answer
    await attempt  # (a dead process answers nobody; this one lives on and finds the retry's answer)
    assert await shop.ledger() == (1, 10)
    async with second.runtime.deps.db.read() as repos:
        (row,) = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM checkins")
    assert row[0] == 1


async def _waiting_on_checkins(shop: Shop) -> bool:
    return await _lock_waiters(shop, "%checkins%") == 1


async def test_the_claims_on_a_stored_answer_exclude_each_other_and_old_answers_go(
    storage: dict[str, Any], clock: FakeClock
) -> None:
    runtime = await Runtime.open(Settings(locale="en", storage=storage), clock)
    try:
        async with runtime.deps.db.transaction() as repos:
            answers = repos.wechat_answers
            await answers.record("wechat:msg:o-a:1", '{"text": "one", "choices": []}', 1_000)
            await answers.record("wechat:msg:o-b:2", '{"text": "two", "choices": []}', 1_500)
            assert await answers.claim_passive("wechat:msg:o-a:1", 1_001)  # a retry got it in its response
            assert await answers.claim_passive("wechat:msg:o-a:1", 1_002)  # and the next retry too
            assert not await answers.claim_late("wechat:msg:o-a:1", 1_003)  # so it never goes out late
            assert await answers.claim_late("wechat:msg:o-b:2", 1_501)  # late, once
            assert not await answers.claim_late("wechat:msg:o-b:2", 1_502)
            assert not await answers.claim_passive("wechat:msg:o-b:2", 1_503)  # a retry after it: 'success'
            assert not await answers.claim_late("wechat:msg:o-c:3", 1_504)  # nothing stored, nothing claimed
            assert await answers.prune(older_than=1_200) == 1
            assert await answers.answer("wechat:msg:o-a:1") is None
            assert await answers.answer("wechat:msg:o-b:2") == '{"text": "two", "choices": []}'
    finally:
        await runtime.close()


# --- the access token ----------------------------------------------------------------------------------------
async def send(worker: Worker, openid: str, text: str) -> None:
    """A customer-service message through the worker's own client, as its pusher sends one (in a thread)."""
    await asyncio.to_thread(worker.channel.client.message.send_text, openid, text)


async def stored_token(shop: Shop) -> tuple[str, int] | None:
    async with shop.workers[-1].runtime.deps.db.read() as repos:
        value = await repos.wechat_session.get(shop.workers[-1].channel.client.access_token_key)
    return None if value is None else (value.value, value.expires_at)


async def test_one_access_token_for_both_workers_fetched_by_the_leader_only(
    shop_factory: Callable[..., Awaitable[Shop]],
) -> None:
    shop = await shop_factory()
    first, second = shop.workers
    second.channel.client.token_wait = 0.2
    with pytest.raises(TokenUnavailable):  # no token yet: the follower asks for one, and never fetches it
        await send(second, "o-fay", "hello")
    assert shop.api.token_requests == 0
    assert await stored_token(shop) == ("", 0)  # the request for a token
    assert await first.channel.tokens.refresh()  # type: ignore[union-attr]  # the leader's job answers it
    assert not await first.channel.tokens.refresh()  # type: ignore[union-attr]  # fresh: nothing to do
    assert not await second.channel.tokens.refresh()  # type: ignore[union-attr]  # a follower's job: never
    await send(second, "o-fay", "from worker 2")
    await send(first, "o-fay", "from worker 1")
    assert shop.api.texts_to("o-fay") == ["from worker 2", "from worker 1"]
    assert shop.api.token_requests == 1


async def test_the_follower_waits_for_the_leaders_token(shop_factory: Callable[..., Awaitable[Shop]]) -> None:
    shop = await shop_factory()
    first, second = shop.workers
    pushing = asyncio.ensure_future(send(second, "o-gil", "waited"))
    await until(lambda: _asked(shop), "the follower's request for a token")
    assert await first.channel.tokens.refresh()  # type: ignore[union-attr]
    await pushing
    assert shop.api.texts_to("o-gil") == ["waited"] and shop.api.token_requests == 1


async def _asked(shop: Shop) -> bool:
    return await stored_token(shop) == ("", 0)


async def test_the_leader_refreshes_ahead_of_expiry_once(
    shop_factory: Callable[..., Awaitable[Shop]], clock: FakeClock
) -> None:
    shop = await shop_factory()
    first, second = shop.workers
    await send(first, "o-hal", "one")  # the leader fetches when it needs a token
    assert shop.api.token_requests == 1
    stored = await stored_token(shop)
    assert stored is not None and stored[0] == "TOKEN-1"
    clock.advance(timedelta(seconds=7200 - 900))  # 15 minutes left: not yet
    assert not await first.channel.tokens.refresh()  # type: ignore[union-attr]
    clock.advance(timedelta(seconds=400))  # under 10 minutes left
    assert await first.channel.tokens.refresh()  # type: ignore[union-attr]
    assert not await first.channel.tokens.refresh()  # type: ignore[union-attr]
    assert shop.api.token_requests == 2
    clock.advance(timedelta(seconds=520))  # the first token has expired; every worker uses the new one
    assert await asyncio.to_thread(lambda: second.channel.client.access_token) == "TOKEN-2"
    await send(second, "o-hal", "two")
    await send(first, "o-hal", "three")
    assert shop.api.texts_to("o-hal") == ["one", "two", "three"] and shop.api.token_requests == 2


async def test_a_token_wechat_refuses_is_replaced_by_the_leader(shop_factory: Callable[..., Awaitable[Shop]]) -> None:
    shop = await shop_factory()
    first, second = shop.workers
    await send(first, "o-ivy", "one")
    await send(second, "o-ivy", "two")  # the follower has the token in memory
    shop.api._issued.clear()  # WeChat no longer takes it (the AppSecret was reset, another server fetched one)
    pushing = asyncio.ensure_future(send(second, "o-ivy", "three"))  # 40001: refused, marked for the leader
    await until(lambda: _refused(shop), "the follower to mark the token refused")
    assert await first.channel.tokens.refresh()  # type: ignore[union-attr]
    await pushing
    await send(first, "o-ivy", "four")
    assert shop.api.texts_to("o-ivy") == ["one", "two", "three", "four"]
    assert shop.api.token_requests == 2


async def _refused(shop: Shop) -> bool:
    return await stored_token(shop) == ("TOKEN-1", 0)


async def test_a_new_leader_fetches_the_token_a_follower_asked_for(
    shop_factory: Callable[..., Awaitable[Shop]], engine: str
) -> None:
    if engine != "postgresql":
        pytest.skip("one process per SQLite file: nobody takes the lead over")
    shop = await shop_factory()
    first, second = shop.workers
    second.channel.client.token_wait = 0.2
    with pytest.raises(TokenUnavailable):
        await send(second, "o-jon", "hello")
    assert await _asked(shop) and shop.api.token_requests == 0
    await first.close()  # the leader goes; the follower takes the lead, and answers its own request at once
    shop.workers = [second]
    await until(lambda: _token_stored(shop), "the new leader's token")
    assert second.runtime.leader.leading and shop.api.token_requests == 1
    await send(second, "o-jon", "hello again")
    assert shop.api.texts_to("o-jon") == ["hello again"] and shop.api.token_requests == 1


async def _token_stored(shop: Shop) -> bool:
    stored = await stored_token(shop)
    return stored is not None and stored[0] == "TOKEN-1"


# --- nonce bindings from several workers at once ----------------------------------------------------------------
async def test_binding_many_nonces_tells_new_retried_and_forged_pairs(runtime: Runtime) -> None:
    async with runtime.deps.db.transaction() as repos:
        assert await repos.wechat_nonces.bind_many([("100", "a", "d1", 500)]) == [True]
    items = [
        ("100", "a", "d1", 500),  # WeChat's retry: the same body again
        ("100", "a", "dX", 500),  # another body under a signed pair: refused
        ("101", "b", "d2", 500),  # new
        ("101", "b", "d2", 500),  # the same pair twice in one batch, same body
        ("101", "b", "dY", 500),  # ... and with another body
    ]
    async with runtime.deps.db.transaction() as repos:
        assert await repos.wechat_nonces.bind_many(items) == [True, False, True, True, False]
        assert await repos.wechat_nonces.bind_many([]) == []


async def test_two_workers_binding_the_same_pairs_in_opposite_orders_do_not_deadlock(pg_url: str) -> None:  # noqa: F811
    """WeChat's retries of one burst land on both workers: their batches share pairs, in any order."""
    from storage.db.postgres import PostgresDatabase

    first = await PostgresDatabase.open(pg_url, readers=1, writers=2)
    second = await PostgresDatabase.open(pg_url, readers=1, writers=2)
    pairs = [(str(1_700_000_000 + n), f"n{n}", f"d{n}", 2_000_000_000) for n in range(300)]
    try:
        for _ in range(5):

            async def bind(db: PostgresDatabase, items: list[tuple[str, str, str, int]]) -> list[bool]:
                async with db.transaction() as repos:
                    return await repos.wechat_nonces.bind_many(items)

            one, other = await asyncio.gather(bind(first, pairs), bind(second, pairs[::-1]))
            assert all(one) and all(other)  # each a retry of the other's: the same bodies
    finally:
        await first.close()
        await second.close()
