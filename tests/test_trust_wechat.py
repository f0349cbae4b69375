"""WeChat requests nobody can forge or garble: a signed query replayed with another body, a stale timestamp,
a query `openid` that is not the body's sender, another member's retry answer, the URL check's echo, ill-typed
fields and non-ASCII digits, and signatures in the logs."""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path
from xml.sax.saxutils import escape

import httpx
import pytest
import xmltodict

from handlers.core.clock import FakeClock
from storage.db.database import Database
from tests.fakes.wechat_api import FakeWeChatApi
from tests.test_wechat import (
    STAFF_OPENID,
    TOKEN,
    WeChatHarness,
    _start,
    _stop,
    answer_text,
    signature,
    text_xml,
    wechat_settings,
)
from tests.test_wechat import wx as wechat_bot

wx = wechat_bot
"""The fixture: a running bot on the fake WeChat API, as in test_wechat."""

_nonces = iter(range(1, 1_000_000))


def signed(timestamp: int, nonce: str | None = None, **extra: str) -> dict[str, str]:
    """A query as WeChat signs it (plain signature over token, timestamp and nonce)."""
    nonce = nonce or f"t{next(_nonces)}"
    return {"signature": signature(TOKEN, str(timestamp), nonce), "timestamp": str(timestamp), "nonce": nonce} | extra


def encrypted(wx: WeChatHarness, xml: str, timestamp: int, **extra: str) -> tuple[dict[str, str], bytes]:
    """Query and body of a safe-mode (AES) post."""
    nonce = f"t{next(_nonces)}"
    envelope = xmltodict.parse(wx.crypto.encrypt_message(xml, nonce, str(timestamp)))["xml"]
    params = signed(timestamp, nonce, encrypt_type="aes", msg_signature=envelope["MsgSignature"], **extra)
    body = f"<xml><ToUserName>gh_shop</ToUserName><Encrypt><![CDATA[{envelope['Encrypt']}]]></Encrypt></xml>"
    return params, body.encode()


async def post(wx: WeChatHarness, params: dict[str, str], body: str | bytes) -> httpx.Response:
    return await wx.http.post("/wechat", params=params, content=body.encode() if isinstance(body, str) else body)


async def ledger(wx: WeChatHarness) -> tuple[int, int]:
    async with wx.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT COUNT(*), COALESCE(SUM(delta), 0) FROM ledger")
    return int(rows[0][0]), int(rows[0][1])


async def is_member(wx: WeChatHarness, openid: str) -> bool:
    async with wx.runtime.deps.db.read() as repos:
        return await repos.members.by_identity("wechat", openid) is not None


async def test_a_signed_query_replayed_with_another_body_is_refused(wx: WeChatHarness) -> None:
    query = signed(wx.now())
    genuine = await post(wx, query, text_xml("o-ann", "签到"))
    assert "Checked in! +10 points" in answer_text(genuine.text)
    for forged in (text_xml("o-eve", "签到"), text_xml(STAFF_OPENID, "/award o-eve 100000"), text_xml("o-ann", "签到")):
        response = await post(wx, query, forged)  # the last one: the same sender, another MsgId
        assert response.status_code == 403, forged
    assert not await is_member(wx, "o-eve")
    assert await ledger(wx) == (1, 10)


async def test_the_nonce_binding_outlives_a_restart(tmp_path: Path, clock: FakeClock) -> None:
    """Kept in the database, not in one process's memory: another process (or a restart) refuses it too."""
    api = await FakeWeChatApi().start()
    settings = wechat_settings(tmp_path, api)
    first = await _start(settings, clock, api)
    query = signed(first.now())
    try:
        assert (await post(first, query, text_xml("o-ann", "签到"))).status_code == 200
    finally:
        await _stop(first, api)
    api = await FakeWeChatApi().start()
    second = await _start(settings, clock, api)
    try:
        assert (await post(second, query, text_xml("o-eve", "签到"))).status_code == 403
        assert not await is_member(second, "o-eve")
    finally:
        await _stop(second, api)


async def test_a_stale_or_future_timestamp_is_refused(wx: WeChatHarness, clock: FakeClock) -> None:
    now = wx.now()
    for timestamp in (now - 301, now + 301, now - 86_400, 0):
        response = await post(wx, signed(timestamp), text_xml("o-eve", "签到"))
        assert response.status_code == 403, timestamp
    assert not await is_member(wx, "o-eve")
    within = await post(wx, signed(now - 299), text_xml("o-ann", "签到"))
    assert "Checked in!" in answer_text(within.text)
    # The check reads the bot's clock: ten minutes on, a query signed "now" is stale.
    later = signed(now)
    clock.advance(timedelta(minutes=10))
    assert (await post(wx, later, text_xml("o-bob", "签到"))).status_code == 403
    params, body = encrypted(wx, text_xml("o-bob", "签到"), now)
    assert (await post(wx, params, body)).status_code == 403
    assert not await is_member(wx, "o-bob")


async def test_the_tolerance_is_configurable(tmp_path: Path, clock: FakeClock) -> None:
    api = await FakeWeChatApi().start()
    harness = await _start(wechat_settings(tmp_path, api, timestamp_tolerance_seconds=60), clock, api)
    try:
        now = harness.now()
        assert (await post(harness, signed(now - 61), text_xml("o-eve", "签到"))).status_code == 403
        assert (await post(harness, signed(now - 59), text_xml("o-ann", "签到"))).status_code == 200
    finally:
        await _stop(harness, api)


async def test_a_retry_with_the_same_query_and_body_gets_the_first_answer_once(wx: WeChatHarness) -> None:
    """WeChat's own retry may repeat the query string with the same body: not a forgery."""
    query, xml = signed(wx.now()), text_xml("o-dan", "签到", msg_id=5151)
    first = await post(wx, query, xml)
    again = await post(wx, query, xml)
    assert (first.status_code, again.status_code) == (200, 200)
    assert "Checked in! +10 points" in answer_text(first.text)
    assert answer_text(again.text) == answer_text(first.text)
    params, body = encrypted(wx, text_xml("o-dan", "积分", msg_id=5152), wx.now())
    safe_first, safe_again = await post(wx, params, body), await post(wx, params, body)
    assert safe_again.status_code == 200
    assert answer_text(safe_again.text, wx.crypto) == answer_text(safe_first.text, wx.crypto)
    assert "points: 10" in answer_text(safe_first.text, wx.crypto)
    assert await ledger(wx) == (1, 10)


async def test_two_members_with_the_same_msgid_each_get_their_own_answer(wx: WeChatHarness) -> None:
    ann = answer_text((await wx.post(text_xml("o-ann", "签到", msg_id=777))).text)
    bob = answer_text((await wx.post(text_xml("o-bob", "积分", msg_id=777))).text)
    assert "Checked in! +10 points" in ann
    assert "points: 0" in bob and "Checked in" not in bob
    cat = answer_text((await wx.post(text_xml("o-cat", "签到", msg_id=777))).text)
    assert "Checked in! +10 points" in cat  # handled, not dropped as a repeat of o-ann's message
    assert await ledger(wx) == (2, 20)


async def test_a_query_openid_that_is_not_the_sender_is_refused(wx: WeChatHarness) -> None:
    plain = await post(wx, signed(wx.now(), openid="o-ann"), text_xml(STAFF_OPENID, "/award o-ann 5000"))
    assert plain.status_code == 403
    params, body = encrypted(wx, text_xml(STAFF_OPENID, "签到"), wx.now(), openid="o-ann")
    assert (await post(wx, params, body)).status_code == 403
    assert await ledger(wx) == (0, 0) and not await is_member(wx, STAFF_OPENID)
    same = await post(wx, signed(wx.now(), openid="o-ann"), text_xml("o-ann", "签到"))
    assert "Checked in!" in answer_text(same.text)


async def test_the_url_check_answers_plain_text_only_when_signed(wx: WeChatHarness) -> None:
    script = "<script>alert(1)</script>"
    good = await wx.http.get("/wechat", params=signed(wx.now(), echostr=script))
    assert good.status_code == 200 and good.text == script
    assert good.headers["content-type"].split(";")[0] == "text/plain"
    assert good.headers["x-content-type-options"] == "nosniff"
    bad = await wx.http.get("/wechat", params={**signed(wx.now()), "signature": "0" * 40, "echostr": script})
    assert bad.status_code == 403 and script not in bad.text
    assert bad.headers["content-type"].split(";")[0] == "text/plain"


def message(**fields: str | list[str]) -> str:
    """A text message whose fields are given raw (a list repeats the element)."""
    base: dict[str, str | list[str]] = {"ToUserName": "gh_shop", "FromUserName": "o-eve", "CreateTime": "1700000000",
                                        "MsgType": "text", "Content": "签到", "MsgId": "1234"}  # fmt: skip
    parts = []
    for name, value in (base | fields).items():
        for item in value if isinstance(value, list) else [value]:
            if item != "<absent>":
                parts.append(f"<{name}>{item}</{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


@pytest.mark.parametrize(
    "body",
    [
        message(MsgId="abc"),
        message(MsgId="-5"),
        message(MsgId="1" * 40),
        message(MsgId="<absent>"),
        message(FromUserName=["o-eve", STAFF_OPENID]),
        message(MsgId=["1", "2"]),
        message(Content=["签到", "积分"]),
        message(FromUserName="<absent>"),
        message(ToUserName="<absent>"),
        message(MsgType="<absent>"),
        message(MsgType="<a>text</a>"),
        message(FromUserName="<a>o-eve</a>"),
        message(CreateTime="9" * 30),
        message(CreateTime="soon"),
        message(Content="签&#0;到"),
        message(FromUserName="o-e&#0;ve"),
        message(FromUserName="o eve\u3000"),
        message(MsgType="event", Event="subscribe", CreateTime="9" * 30),
        message(MsgType="event", Event="subscribe", CreateTime="-1"),
        message(MsgType="event", Event="CLICK", EventKey=["CHECKIN", "HELP"]),
        message(MsgType="event", Event=["subscribe", "CLICK"]),
    ],
)
async def test_ill_typed_fields_get_a_4xx_never_a_5xx(wx: WeChatHarness, body: str) -> None:
    response = await post(wx, signed(wx.now()), body)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    params, sealed = encrypted(wx, body, wx.now())
    response = await post(wx, params, sealed)
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert not await is_member(wx, "o-eve") and not await is_member(wx, STAFF_OPENID)


@pytest.mark.parametrize(
    "query",
    [
        {"timestamp": "１７００"},
        {"timestamp": "9" * 40},
        {"timestamp": ""},
        {"nonce": "x" * 500},
        {"signature": "签名"},
        {"openid": "o-eve<b>"},
        {"nonce": "n\x00"},
    ],
)
async def test_ill_typed_query_fields_get_a_4xx(wx: WeChatHarness, query: dict[str, str]) -> None:
    params = signed(wx.now()) | query
    if "timestamp" in query or "nonce" in query:  # signed as given
        params["signature"] = signature(TOKEN, params["timestamp"], params["nonce"])
    response = await post(wx, params, text_xml("o-eve", "签到"))
    assert 400 <= response.status_code < 500, (response.status_code, response.text)
    assert not await is_member(wx, "o-eve")


async def test_numbered_choices_in_other_digits(wx: WeChatHarness) -> None:
    for openid in ("o-amy", "o-ben", "o-cid", "o-dot"):
        await wx.say(openid, "签到")  # members with an open customer-service window
    assert "Poll #1 posted" in await wx.say(STAFF_OPENID, "/poll rating How was it? --hours 5")
    assert await wx.runtime.outbox.idle()
    assert "Thank you! Your answer: 4" in await wx.say("o-amy", "④")  # circled
    assert "Thank you! Your answer: 5" in await wx.say("o-ben", "５")  # full width
    assert "Thank you! Your answer: 3" in await wx.say("o-cid", " ３ ")
    for text, number in (("⑩", 10), ("１２", 12), ("0", 0), ("٣٣", 33)):  # none of the 5 choices: a clear answer
        assert f"There is no choice {number}" in await wx.say("o-dot", text), text
    async with wx.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM poll_answers")
    assert rows[0][0] == 3


async def test_the_logs_never_show_a_signature(wx: WeChatHarness, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    queries = [signed(wx.now(), openid="o-ann") for _ in range(5)]
    await post(wx, queries[0], text_xml("o-ann", "签到"))
    await post(wx, queries[1], b"<xml><broken")  # 400
    await post(wx, queries[2], text_xml("o-bob", "签到"))  # 403: not the query's openid
    await wx.http.get("/wechat", params={**queries[3], "echostr": "e1"})
    params, body = encrypted(wx, text_xml("o-ann", "积分"), wx.now(), openid="o-ann")
    await post(wx, params, body)
    await wx.http.post("/wechat?signature=%ff%fe&timestamp=1&nonce=2", content=b"<xml/>")  # undecodable query
    secrets = [q["signature"] for q in queries] + [params["signature"], params["msg_signature"]]
    server_side = [r for r in caplog.records if not r.name.startswith(("httpx", "httpcore"))]  # not the client's
    logged = "\n".join(f"{r.name}: {r.getMessage()}" for r in server_side)
    assert "/wechat" in logged  # the access log is still there
    for secret in secrets:
        assert secret not in logged
    assert "signature=" not in logged and "%ff" not in logged.lower()


async def test_the_nonce_table_is_pruned(tmp_path: Path) -> None:
    db = await Database.open(str(tmp_path / "n.db"))
    try:
        async with db.transaction() as repos:
            assert await repos.wechat_nonces.bind("100", "a", "d1", keep_until=1_000)
            assert await repos.wechat_nonces.bind("100", "a", "d1", keep_until=1_000)  # the same body: a retry
            assert not await repos.wechat_nonces.bind("100", "a", "d2", keep_until=1_000)
            assert await repos.wechat_nonces.bind("100", "b", "d2", keep_until=5_000)
            assert await repos.wechat_nonces.prune(2_000) == 1
            assert await repos.wechat_nonces.bind("100", "a", "d2", keep_until=1_000)  # gone: free again
            assert not await repos.wechat_nonces.bind("100", "b", "d1", keep_until=5_000)
    finally:
        await db.close()


async def test_an_answer_quoting_a_member_cannot_break_out_of_its_xml(wx: WeChatHarness) -> None:
    """The passive answer is XML with the text in CDATA: a member's ']]>' quoted back must stay text."""
    sneaky = "快递]]></Content><MsgType><![CDATA[image]]></MsgType><Content><![CDATA[x"
    complaint = message(FromUserName="o-ann", Content=escape(f"投诉 {sneaky}"), MsgId="31337")
    assert "#1" in answer_text((await wx.post(complaint)).text)
    response = await wx.post(text_xml(STAFF_OPENID, "/tickets 1"))
    answer = xmltodict.parse(response.text)["xml"]
    assert answer["MsgType"] == "text"
    assert sneaky in answer["Content"]
