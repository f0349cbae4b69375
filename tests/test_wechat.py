"""WeChat end to end: signed and encrypted posts to the real HTTP server, retries, the 5-second window,
the customer-service window for pushes, numbered choices, and linking a WeChat account to a member."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import xmltodict
from wechatpy.crypto import WeChatCrypto

from bot.app.config import Settings
from bot.app.runtime import Runtime
from bot.app.web import WebServer
from bot.wechat.channel import WeChatChannel
from handlers.core.clock import FakeClock
from tests.conftest import ChatDriver, storage_for
from tests.fakes.wechat_api import FakeWeChatApi, answer_text

TOKEN = "shoptoken"
APP_ID = "wx0123456789abcdef"
AES_KEY = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG"
STAFF_OPENID = "o-staff-0001"
_ids = iter(range(1, 1_000_000))


def signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def text_xml(openid: str, content: str, msg_id: int | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content><![CDATA[{content}]]></Content><MsgId>{msg_id or next(_ids)}</MsgId></xml>"
    )


def event_xml(openid: str, event: str, key: str = "", created: int | None = None) -> str:
    return (
        f"<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><FromUserName><![CDATA[{openid}]]></FromUserName>"
        f"<CreateTime>{created or next(_ids)}</CreateTime><MsgType><![CDATA[event]]></MsgType>"
        f"<Event><![CDATA[{event}]]></Event><EventKey><![CDATA[{key}]]></EventKey></xml>"
    )


@dataclass
class WeChatHarness:
    http: httpx.AsyncClient
    runtime: Runtime
    api: FakeWeChatApi
    crypto: WeChatCrypto

    def now(self) -> int:
        """The bot's clock (the one its timestamp check reads), in unix seconds."""
        return int(self.runtime.deps.clock.now().timestamp())

    async def post(self, xml: str, *, encrypted: bool = False, forged: bool = False) -> httpx.Response:
        timestamp, nonce = str(self.now()), f"n{next(_ids)}"
        if encrypted:
            envelope = xmltodict.parse(self.crypto.encrypt_message(xml, nonce, timestamp))["xml"]
            params = {"timestamp": timestamp, "nonce": nonce, "encrypt_type": "aes",
                      "msg_signature": envelope["MsgSignature"] if not forged else "0" * 40,
                      "signature": signature(TOKEN, timestamp, nonce)}  # fmt: skip
            encrypt = envelope["Encrypt"]
            body = f"<xml><ToUserName><![CDATA[gh_shop]]></ToUserName><Encrypt><![CDATA[{encrypt}]]></Encrypt></xml>"
            return await self.http.post("/wechat", params=params, content=body.encode())
        sig = signature(TOKEN if not forged else "wrong", timestamp, nonce)
        return await self.http.post("/wechat", params={"signature": sig, "timestamp": timestamp, "nonce": nonce},
                                    content=xml.encode())  # fmt: skip

    async def say(self, openid: str, content: str, **kwargs: Any) -> str:
        """Post a text message and return the passive answer's text ('' for 'success')."""
        response = await self.post(text_xml(openid, content), **kwargs)
        assert response.status_code == 200, response.text
        return answer_text(response.text, self.crypto if kwargs.get("encrypted") else None)

    async def balance(self, openid: str) -> int:
        async with self.runtime.deps.db.read() as repos:
            member = await repos.members.by_identity("wechat", openid)
        assert member is not None
        return member.balance


def wechat_settings(tmp_path: Path, api: FakeWeChatApi, **wechat: Any) -> Settings:
    return Settings(
        locale="en",
        storage=storage_for(tmp_path / "wx.db"),
        staff={"wechat": [STAFF_OPENID]},
        wechat={
            "app_id": APP_ID,
            "token": TOKEN,
            "encoding_aes_key": AES_KEY,
            "mode": "compatible",
            "app_secret": "secret",
            "api_base_url": api.base_url,
            **wechat,
        },
        http={"host": "127.0.0.1", "port": 0},
        greetings={"enabled": False},  # holiday greetings would take announcement numbers the tests count on
    )


@pytest.fixture
async def wx(tmp_path: Path, clock: FakeClock) -> AsyncIterator[WeChatHarness]:
    api = await FakeWeChatApi().start()
    harness = await _start(wechat_settings(tmp_path, api), clock, api)
    try:
        yield harness
    finally:
        await _stop(harness, api)


@contextlib.asynccontextmanager
async def handling_held(dispatcher: Any) -> AsyncIterator[None]:
    """The dispatcher's handling waits until the block ends, so the answer misses its budget; the database
    stays free (the message's nonce binding, which keeps it, goes through)."""
    gate = asyncio.Event()
    original = dispatcher.handle_update

    async def held(*args: Any, **kwargs: Any) -> Any:
        await gate.wait()
        return await original(*args, **kwargs)

    dispatcher.handle_update = held
    try:
        yield
    finally:
        gate.set()
        del dispatcher.handle_update  # the method again


async def kept(runtime: Runtime) -> list[tuple[str, str, bool]]:
    """The WeChat messages in the inbox: (key, payload, done)."""
    async with runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall(
            "SELECT key, payload, done_at IS NOT NULL FROM inbox WHERE channel = 'wechat' ORDER BY id"
        )
    return [(str(r[0]), str(r[1]), bool(r[2])) for r in rows]


async def _start(settings: Settings, clock: FakeClock, api: FakeWeChatApi) -> WeChatHarness:
    runtime = await Runtime.open(settings, clock)
    web = WebServer("127.0.0.1", 0, settings.http.max_body_bytes)
    channel = WeChatChannel(settings, runtime.dispatcher)
    await channel.attach(runtime, web)
    await web.start()
    await runtime.start()
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{web.port}", timeout=20)
    harness = WeChatHarness(http, runtime, api, WeChatCrypto(TOKEN, AES_KEY, APP_ID))
    harness._web = web  # type: ignore[attr-defined]
    harness._channel = channel  # type: ignore[attr-defined]
    return harness


async def _stop(harness: WeChatHarness, api: FakeWeChatApi) -> None:
    await harness.http.aclose()
    await harness._web.stop()  # type: ignore[attr-defined]
    await harness._channel.stop()  # type: ignore[attr-defined]
    await harness.runtime.close()
    await api.stop()


async def test_the_url_check_echoes_only_when_signed(wx: WeChatHarness) -> None:
    ts, nonce = "1700000000", "abc"
    good = await wx.http.get("/wechat", params={"signature": signature(TOKEN, ts, nonce), "timestamp": ts,
                                                "nonce": nonce, "echostr": "hello123"})  # fmt: skip
    assert (good.status_code, good.text) == (200, "hello123")
    bad = await wx.http.get("/wechat", params={"signature": "x", "timestamp": ts, "nonce": nonce, "echostr": "e"})
    assert bad.status_code == 403


async def test_checkin_points_and_a_keyword_with_arguments_in_plain_mode(wx: WeChatHarness) -> None:
    assert "Checked in! +10 points" in await wx.say("o-ann", "签到")
    assert "already checked in today" in await wx.say("o-ann", "签到")
    assert "points: 10" in await wx.say("o-ann", "积分")
    assert "Birthday saved: month 2, day 29." in await wx.say("o-ann", "生日 02-29")
    assert await wx.balance("o-ann") == 10


async def test_encrypted_messages_get_encrypted_answers(wx: WeChatHarness) -> None:
    response = await wx.post(text_xml("o-bob", "签到"), encrypted=True)
    assert response.status_code == 200 and "<Encrypt>" in response.text
    assert "Checked in! +10 points" in answer_text(response.text, wx.crypto)


async def test_menu_clicks_subscribe_and_unsubscribe(wx: WeChatHarness) -> None:
    welcome = await wx.post(event_xml("o-cat", "subscribe"))
    assert "Welcome to the VIP club" in answer_text(welcome.text)
    click = await wx.post(event_xml("o-cat", "CLICK", "CHECKIN"))
    assert "Checked in!" in answer_text(click.text)
    gone = await wx.post(event_xml("o-cat", "unsubscribe"))
    assert (gone.status_code, gone.text) == (200, "success")
    async with wx.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("wechat", "o-cat")
        (identity,) = await repos.members.identities(member.id)  # type: ignore[union-attr]
    assert member is not None and member.balance == 10 and not identity.can_message  # nothing deleted


async def test_forged_malformed_and_oversized_requests_are_refused(wx: WeChatHarness) -> None:
    assert (await wx.post(text_xml("o-eve", "签到"), forged=True)).status_code == 403
    assert (await wx.post(text_xml("o-eve", "签到"), encrypted=True, forged=True)).status_code == 403
    ts, nonce = str(wx.now()), "n1"
    params = {"signature": signature(TOKEN, ts, nonce), "timestamp": ts, "nonce": nonce}
    for body in (b"<xml><unclosed>", b"not xml at all", "<xml>签到</xml>".encode("gbk"), b"<xml></xml>"):
        assert (await wx.http.post("/wechat", params=params, content=body)).status_code == 400, body
    huge = text_xml("o-eve", "x" * 70_000).encode()
    assert (await wx.http.post("/wechat", params=params, content=huge)).status_code == 413
    async with wx.runtime.deps.db.read() as repos:
        assert await repos.members.by_identity("wechat", "o-eve") is None


async def test_a_retried_message_is_handled_once_with_the_same_answer(wx: WeChatHarness) -> None:
    xml = text_xml("o-dan", "签到", msg_id=424242)
    first = answer_text((await wx.post(xml)).text)
    again = answer_text((await wx.post(xml)).text)
    assert "Checked in! +10 points" in first and again == first
    assert await wx.balance("o-dan") == 10


async def test_a_slow_answer_says_success_once_kept_then_comes_by_customer_service(
    tmp_path: Path, clock: FakeClock
) -> None:
    api = await FakeWeChatApi().start()
    harness = await _start(wechat_settings(tmp_path, api, reply_budget_seconds=0.2), clock, api)
    try:
        await harness.say("o-fay", "积分")  # opens the member's customer-service window
        xml = text_xml("o-fay", "签到", msg_id=4242)
        async with handling_held(harness.runtime.dispatcher):  # the handler is slow
            response = await harness.post(xml)
            assert (response.status_code, response.text) == (200, "success")
            assert harness._channel.not_kept_in_time == 0  # type: ignore[attr-defined]
            # WeChat was told the message arrived only once it was kept: a crash now leaves it to the sweep.
            assert (await kept(harness.runtime))[-1] == ("wechat:msg:o-fay:4242", xml, False)
        assert await harness.runtime.outbox.idle()
        for _ in range(200):
            if api.texts_to("o-fay"):
                break
            await __import__("asyncio").sleep(0.01)
        assert any("Checked in! +10 points" in t for t in api.texts_to("o-fay"))
        assert api.token_requests == 1  # the access token is cached
    finally:
        await _stop(harness, api)


async def test_a_late_answer_lists_its_choices_once_and_they_work(tmp_path: Path, clock: FakeClock) -> None:
    api = await FakeWeChatApi().start()
    harness = await _start(wechat_settings(tmp_path, api, reply_budget_seconds=0.2), clock, api)
    try:
        await harness.say("o-gia", "积分")  # opens the member's customer-service window
        async with handling_held(harness.runtime.dispatcher):  # the handler is slow: the answer comes late
            response = await harness.post(text_xml("o-gia", "你好"))
        assert (response.status_code, response.text) == (200, "success")
        await harness._channel.stop()  # type: ignore[attr-defined]  # the late answer has gone out
        (late,) = [t for t in api.texts_to("o-gia") if "Reply 1: " in t]
        assert late.count("Reply 1: ") == 1 and late.count("Reply 2: ") == 1
        assert "#1" in await harness.say("o-gia", "2")  # the one-tap ticket, chosen by its number
    finally:
        await _stop(harness, api)


@pytest.mark.sqlite_only  # a transaction held by the test holds up every write on SQLite's one writer only
async def test_a_database_too_busy_to_keep_the_message_in_time_still_gets_success_and_one_late_answer(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A process so swamped that even the message's binding has not finished when the budget runs out says
    `success` anyway (a 503, or a longer wait, would bring WeChat's retry into the same swamp) and counts it;
    the message is kept and handled once the database is free, and the answer goes out late, once."""
    api = await FakeWeChatApi().start()
    harness = await _start(wechat_settings(tmp_path, api, reply_budget_seconds=0.2), clock, api)
    channel: WeChatChannel = harness._channel  # type: ignore[attr-defined]
    try:
        await harness.say("o-fin", "积分")  # opens the member's customer-service window
        async with harness.runtime.deps.db.transaction():  # the database is busy: nothing can be kept
            response = await asyncio.wait_for(harness.post(text_xml("o-fin", "签到")), 2.0)  # at the budget
        assert (response.status_code, response.text) == (200, "success")
        assert channel.not_kept_in_time == 1
        await channel.stop()  # the late answer has gone out
        assert len([t for t in api.texts_to("o-fin") if "Checked in! +10 points" in t]) == 1
        assert await harness.balance("o-fin") == 10
        assert (await kept(harness.runtime))[-1][2]  # kept when the database was free, and handled
    finally:
        await _stop(harness, api)


async def test_an_answer_ready_after_wechat_cut_the_attempt_goes_out_late_once(
    tmp_path: Path, clock: FakeClock
) -> None:
    """WeChat cut the attempt (its 5 s ran out while the request waited on a swamped worker) before the answer
    was ready, though the bot's own budget had not run out: an answer in that response would reach nobody.
    It goes out late instead, once, and WeChat's retry is told `success`."""
    api = await FakeWeChatApi().start()
    harness = await _start(wechat_settings(tmp_path, api, reply_budget_seconds=4.0), clock, api)
    channel: WeChatChannel = harness._channel  # type: ignore[attr-defined]
    try:
        await harness.say("o-gwen", "积分")  # opens the member's customer-service window
        timestamp, nonce, xml = str(harness.now()), "cut1", text_xml("o-gwen", "签到", msg_id=4343)
        params = {"signature": signature(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        async with handling_held(harness.runtime.dispatcher):  # the answer is not ready yet
            async with httpx.AsyncClient(base_url=harness.http.base_url, timeout=0.3) as wechat:
                with pytest.raises(httpx.ReadTimeout):  # WeChat gives up on this attempt and closes it
                    await wechat.post("/wechat", params=params, content=xml.encode())
            for _ in range(50):  # the server's loop sees the connection close
                await asyncio.sleep(0)
        for _ in range(500):  # the handler finishes (a task of the server's, which no clock of ours drives)
            if api.texts_to("o-gwen") or harness.http.is_closed:
                break
            await asyncio.sleep(0.01)
        await channel.stop()  # the late answer has gone out
        assert len([t for t in api.texts_to("o-gwen") if "Checked in! +10 points" in t]) == 1
        retry = await harness.http.post("/wechat", params=params, content=xml.encode())
        assert (retry.status_code, retry.text) == (200, "success")  # the member has the answer already
        await channel.stop()
        assert len([t for t in api.texts_to("o-gwen") if "Checked in!" in t]) == 1
        assert await harness.balance("o-gwen") == 10
    finally:
        await _stop(harness, api)


async def test_a_retry_after_the_late_answer_went_out_is_told_success(tmp_path: Path, clock: FakeClock) -> None:
    """One process alone on its database (SQLite) keeps the answers for retries in memory, not in the database."""
    api = await FakeWeChatApi().start()
    harness = await _start(wechat_settings(tmp_path, api, reply_budget_seconds=0.2), clock, api)
    try:
        await harness.say("o-hep", "积分")  # opens the member's customer-service window
        timestamp, nonce, xml = str(harness.now()), "retried1", text_xml("o-hep", "签到", msg_id=777)
        params = {"signature": signature(TOKEN, timestamp, nonce), "timestamp": timestamp, "nonce": nonce}
        async with handling_held(harness.runtime.dispatcher):  # the handler is slow: the answer comes late
            first = await harness.http.post("/wechat", params=params, content=xml.encode())
        assert first.text == "success"
        await harness._channel.stop()  # type: ignore[attr-defined]  # the late answer has gone out
        assert len([t for t in api.texts_to("o-hep") if "Checked in! +10 points" in t]) == 1
        retry = await harness.http.post("/wechat", params=params, content=xml.encode())
        assert (retry.status_code, retry.text) == (200, "success")  # the member has the answer already
        await harness._channel.stop()  # type: ignore[attr-defined]
        assert len([t for t in api.texts_to("o-hep") if "Checked in!" in t]) == 1
        assert await harness.balance("o-hep") == 10
        async with harness.runtime.deps.db.read() as repos:
            (row,) = await repos.conn.execute_fetchall(
                "SELECT COUNT(*) FROM wechat_answers WHERE key = 'wechat:msg:o-hep:777'"
            )
        assert row[0] == (1 if harness.runtime.leader.shared else 0)  # shared: kept for the other workers
    finally:
        await _stop(harness, api)


async def test_pushes_use_the_window_and_numbered_choices(wx: WeChatHarness, clock: FakeClock) -> None:
    await wx.say("o-gus", "签到")
    assert "Poll #1 posted to 2 recipients" in await wx.say(STAFF_OPENID, "/poll rating How was it? --hours 5")
    await wx.say(STAFF_OPENID, "/announce hello")  # the staff member opened a window too
    assert await wx.runtime.outbox.idle()
    (post,) = [t for t in wx.api.texts_to("o-gus") if "Poll #1" in t]
    assert "Reply 5: 5⭐" in post
    assert "Thank you! Your answer: 5" in await wx.say("o-gus", "5")
    async with wx.runtime.deps.db.transaction() as repos:  # the member's window closed two days ago
        await repos.conn.execute("UPDATE identities SET last_inbound_at = 0 WHERE external_id = 'o-gus'")
    await wx.say(STAFF_OPENID, "/announce second")
    assert await wx.runtime.outbox.idle()
    status = await wx.say(STAFF_OPENID, "/delivery 4")
    assert "1 failed" in status and "outside the 48-hour customer-service window" in status


async def test_a_wechat_account_links_to_a_telegram_member(wx: WeChatHarness) -> None:
    chat = ChatDriver(wx.runtime)
    await chat.say("alice", "/checkin")
    await chat.say("boss", "/award @alice 700")
    code = (await chat.say("alice", "/bind", group=False)).split("Your link code: ")[1].split(" ")[0]
    await wx.say("o-ann", "签到")  # the WeChat side has points of its own
    text = await wx.say("o-ann", f"绑定 {code}")
    assert "Linked! Both accounts are now member Alice: 720 points, tier Diamond." in text
    async with wx.runtime.deps.db.read() as repos:
        member = await repos.members.by_identity("wechat", "o-ann")
        assert member is not None and member.balance == 720
        assert {i.channel for i in await repos.members.identities(member.id)} == {"test", "wechat"}
        assert await repos.ledger.mismatched_balances() == []
    assert "points: 720" in await wx.say("o-ann", "积分")
    assert "wrong or expired" in await wx.say("o-ann", f"绑定 {code}")
    unlinked = await chat.say("boss", "/unlink @alice wechat")
    assert "Unlinked Alice on WeChat" in unlinked
    assert await wx.balance("o-ann") == 0
    assert replace  # keeps the import used in this module's helpers


async def test_a_burst_of_members_and_their_retries_all_get_passive_answers_once(wx: WeChatHarness) -> None:
    members = [f"o-burst-{i:03d}" for i in range(150)]
    messages = [text_xml(openid, "签到", msg_id=900_000 + i) for i, openid in enumerate(members)]
    # Every message twice at the same moment: WeChat's retry can overlap the first attempt.
    responses = await asyncio.gather(*(wx.post(xml) for xml in messages + messages))
    answers = [answer_text(r.text) for r in responses]
    assert all(r.status_code == 200 for r in responses)
    assert all(a.startswith("Checked in! +10 points") for a in answers), set(answers)
    async with wx.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT COUNT(*), COALESCE(SUM(delta), 0) FROM ledger")
        assert tuple(rows[0]) == (150, 1500)
        assert await repos.ledger.mismatched_balances() == []


async def test_staff_notices_reach_the_staff_openids(wx: WeChatHarness) -> None:
    await wx.say(STAFF_OPENID, "积分")  # staff wrote within 48 hours: their customer-service window is open
    reply = await wx.say("o-ann", "投诉 快递太慢了")
    assert "#1" in reply
    assert await wx.runtime.outbox.idle()
    notices = wx.api.texts_to(STAFF_OPENID)
    assert any("#1" in text and "快递太慢了" in text for text in notices), notices


def test_the_access_token_fetch_gives_up_on_a_server_that_never_answers() -> None:
    """wechatpy fetches the token with no timeout of its own: the bot's client bounds it, so a silent network
    cannot hang the thread that pushes (or answers late) for good."""
    import socket
    import time

    import pytest
    import requests

    from bot.wechat.client import ShopWeChatClient

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # accepts the connection, never answers
        port = silent.getsockname()[1]
        client = ShopWeChatClient("wxapp", "secret", f"http://127.0.0.1:{port}/cgi-bin/", timeout=0.3)
        began = time.monotonic()
        with pytest.raises(requests.Timeout):
            client.fetch_access_token()
        assert time.monotonic() - began < 5
