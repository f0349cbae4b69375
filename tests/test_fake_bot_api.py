"""The fake Bot API enforces Telegram's flood limits and answers edits, pins and getUpdates like Telegram.

Every test posts straight to the fake with httpx and moves the fake's injected clock instead of sleeping.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from telegram import Bot, Message
from telegram.error import BadRequest, RetryAfter

from tests.fakes.bot_api import NOT_MODIFIED, FakeBotApi, message_update, user

GROUP = -1001234567890
OTHER_GROUP = -1009999
ALICE = 101
BOB = 102
KEYBOARD = {"inline_keyboard": [[{"text": "Join", "callback_data": "v1:join:1"}]]}


class Clock:
    """A monotonic clock that only moves when told to."""

    def __init__(self) -> None:
        self.t = 5000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@dataclass
class Fake:
    api: FakeBotApi
    http: httpx.AsyncClient
    clock: Clock

    async def call(self, method: str, **params: Any) -> tuple[int, dict[str, Any]]:
        response = await self.http.post(method, json=params)
        return response.status_code, response.json()

    async def ok(self, method: str, **params: Any) -> Any:
        status, body = await self.call(method, **params)
        assert (status, body["ok"]) == (200, True), body
        return body["result"]

    async def send(self, chat_id: int, text: str = "hi", **params: Any) -> tuple[int, dict[str, Any]]:
        return await self.call("sendMessage", chat_id=chat_id, text=text, **params)


async def started(api: FakeBotApi, clock: Clock) -> AsyncIterator[Fake]:
    await api.start()
    try:
        async with httpx.AsyncClient(base_url=f"{api.base_url}{api.token}/", trust_env=False, timeout=10) as http:
            yield Fake(api, http, clock)
    finally:
        await api.stop()


@pytest.fixture
async def fake() -> AsyncIterator[Fake]:
    clock = Clock()
    async for f in started(FakeBotApi(now=clock), clock):
        yield f


def assert_flood(status: int, body: dict[str, Any], retry_after: int) -> None:
    assert status == 429
    assert body == {
        "ok": False,
        "error_code": 429,
        "description": f"Too Many Requests: retry after {retry_after}",
        "parameters": {"retry_after": retry_after},
    }


# --- one group: 20 messages a minute ---------------------------------------------------------------------
async def test_the_21st_group_message_within_a_minute_is_refused_until_the_first_leaves_the_window(
    fake: Fake,
) -> None:
    for n in range(20):
        assert (await fake.send(GROUP, f"m{n}"))[0] == 200
        fake.clock.advance(0.5)  # 20 messages in 10 s: never more than 30 a second
    assert fake.api.group_load(GROUP) == 20
    first = fake.api.calls[0].at

    fake.clock.t = first + 30
    assert_flood(*await fake.send(GROUP, "too many"), retry_after=30)  # the first leaves at first + 60
    fake.clock.t = first + 59.5
    assert_flood(*await fake.send(GROUP, "too many"), retry_after=1)  # half a second, rounded up
    assert (await fake.send(OTHER_GROUP, "elsewhere"))[0] == 200  # another group has its own window

    fake.clock.t = first + 60
    assert (await fake.send(GROUP, "room again"))[0] == 200  # the refused ones were not counted
    assert_flood(*await fake.send(GROUP, "full again"), retry_after=1)  # the second leaves at first + 60.5

    refusals = fake.api.flood_refusals()
    assert [c.params["text"] for c in refusals] == ["too many", "too many", "full again"]
    assert all(c.status == 429 and c.method == "sendMessage" for c in refusals)
    assert fake.api.group_load(GROUP) == 20  # never more than 20 in any 60 s
    assert fake.api.max_per_minute() == {GROUP: 20, OTHER_GROUP: 1}
    assert "too many" not in fake.api.texts(GROUP)


async def test_edits_count_against_the_group_limit(fake: Fake) -> None:
    status, body = await fake.send(GROUP, "board 0", reply_markup=KEYBOARD)
    assert status == 200
    message_id = body["result"]["message_id"]
    for n in range(1, 20):
        fake.clock.advance(1)
        edited = await fake.ok("editMessageText", chat_id=GROUP, message_id=message_id, text=f"board {n}")
        assert (edited["message_id"], edited["text"]) == (message_id, f"board {n}")
    fake.clock.advance(1)
    status, body = await fake.call("editMessageText", chat_id=GROUP, message_id=message_id, text="board 20")
    assert_flood(status, body, retry_after=40)  # the send at t0 leaves at t0 + 60; now is t0 + 20
    assert_flood(*await fake.send(GROUP, "a new message"), retry_after=40)  # sends and edits share the window
    assert fake.api.messages(GROUP) == {message_id: "board 19"}  # the refused edit changed nothing
    assert fake.api.group_load(GROUP) == 20
    assert [c.method for c in fake.api.flood_refusals()] == ["editMessageText", "sendMessage"]


async def test_a_media_group_counts_one_message_per_item_and_a_pin_counts_as_one(fake: Fake) -> None:
    media = [{"type": "photo", "media": f"file-{n}", "caption": f"c{n}"} for n in range(5)]
    album = await fake.ok("sendMediaGroup", chat_id=GROUP, media=media)
    assert [m["caption"] for m in album] == [f"c{n}" for n in range(5)]
    assert len({m["media_group_id"] for m in album}) == 1
    assert await fake.ok("pinChatMessage", chat_id=GROUP, message_id=album[0]["message_id"]) is True
    assert fake.api.group_load(GROUP) == 6
    for n in range(14):
        assert (await fake.send(GROUP, f"m{n}"))[0] == 200
    status, _ = await fake.call("pinChatMessage", chat_id=GROUP, message_id=album[0]["message_id"])
    assert status == 429
    assert fake.api.group_load(GROUP) == 20


# --- one private chat: one message a second ----------------------------------------------------------------
async def test_a_second_private_message_within_a_second_is_refused(fake: Fake) -> None:
    assert (await fake.send(ALICE, "one"))[0] == 200
    fake.clock.advance(0.25)
    assert_flood(*await fake.send(ALICE, "two"), retry_after=1)
    assert (await fake.send(BOB, "for bob"))[0] == 200  # each private chat has its own window
    fake.clock.advance(0.5)
    assert_flood(*await fake.send(ALICE, "two"), retry_after=1)  # 0.25 s to go, rounded up to 1
    fake.clock.advance(0.25)
    assert (await fake.send(ALICE, "two"))[0] == 200  # 1 s after "one": the refusals did not count
    assert fake.api.texts(ALICE) == ["one", "two"]
    assert len(fake.api.flood_refusals()) == 2
    assert fake.api.refused() == [{"chat_id": ALICE, "text": "two"}] * 2


async def test_edits_count_in_a_private_chat_too(fake: Fake) -> None:
    sent = await fake.ok("sendMessage", chat_id=ALICE, text="v1")
    status, _ = await fake.call("editMessageText", chat_id=ALICE, message_id=sent["message_id"], text="v2")
    assert status == 429
    fake.clock.advance(1)
    assert (await fake.ok("editMessageText", chat_id=ALICE, message_id=sent["message_id"], text="v2"))["text"] == "v2"


# --- every chat: 30 messages a second ----------------------------------------------------------------------
async def test_the_31st_message_within_a_second_across_chats_is_refused(fake: Fake) -> None:
    for n in range(30):  # 30 chats, one message each, well inside every per-chat limit
        chat = ALICE + n if n % 2 else GROUP - n
        assert (await fake.send(chat, f"m{n}"))[0] == 200
        fake.clock.advance(0.03)  # 30 messages in 0.9 s
    assert_flood(*await fake.send(ALICE + 1000, "31st"), retry_after=1)
    status, body = await fake.call("editMessageText", chat_id=GROUP, message_id=1, text="an edit is a message")
    assert status == 429 and body["parameters"]["retry_after"] == 1
    fake.clock.t = fake.api.calls[0].at + 1.0  # the first message has left the 1 s window
    assert (await fake.send(ALICE + 1000, "31st"))[0] == 200
    assert_flood(*await fake.send(ALICE + 1001, "32nd"), retry_after=1)  # the second leaves only 0.03 s later
    assert len(fake.api.flood_refusals()) == 3


async def test_answering_callback_queries_and_other_methods_are_never_refused(fake: Fake) -> None:
    for n in range(30):
        assert (await fake.send(GROUP - n, "fill the second"))[0] == 200
    assert (await fake.send(GROUP - 99, "one too many"))[0] == 429
    for n in range(100):  # no message limit applies to these
        assert await fake.ok("answerCallbackQuery", callback_query_id=f"cb{n}", text="Signed up") is True
    assert (await fake.ok("getMe"))["username"]
    assert await fake.ok("getChatAdministrators", chat_id=GROUP) == []
    assert await fake.ok("setWebhook", url="https://example.invalid/hook") is True
    assert len(fake.api.sent("answerCallbackQuery")) == 100  # recorded
    assert fake.api.sent("answerCallbackQuery")[0] == {"callback_query_id": "cb0", "text": "Signed up"}
    assert len(fake.api.flood_refusals()) == 1
    fake.clock.advance(1)
    assert (await fake.send(GROUP - 99, "room again"))[0] == 200  # the 100 answers took no room


# --- edits answer like Telegram ----------------------------------------------------------------------------
async def test_an_edit_that_changes_nothing_gets_400_not_modified(fake: Fake) -> None:
    sent = await fake.ok("sendMessage", chat_id=GROUP, text="Tasting (1 signed up)", reply_markup=KEYBOARD)
    target = {"chat_id": GROUP, "message_id": sent["message_id"]}

    status, body = await fake.call("editMessageText", **target, text="Tasting (1 signed up)", reply_markup=KEYBOARD)
    assert (status, body) == (400, {"ok": False, "error_code": 400, "description": NOT_MODIFIED})
    assert body["description"].startswith("Bad Request: message is not modified: specified new message content")

    edited = await fake.ok("editMessageText", **target, text="Tasting (2 signed up)", reply_markup=KEYBOARD)
    assert edited["message_id"] == sent["message_id"]
    assert (edited["text"], edited["reply_markup"]) == ("Tasting (2 signed up)", KEYBOARD)
    assert "edit_date" in edited
    assert fake.api.messages(GROUP) == {sent["message_id"]: "Tasting (2 signed up)"}
    status, _ = await fake.call("editMessageText", **target, text="Tasting (2 signed up)", reply_markup=KEYBOARD)
    assert status == 400  # compared with the last text, not the first

    dropped = await fake.ok("editMessageText", **target, text="Tasting (2 signed up)")  # the keyboard goes
    assert "reply_markup" not in dropped
    assert (await fake.call("editMessageText", **target, text="Tasting (2 signed up)"))[0] == 400
    assert (await fake.call("editMessageReplyMarkup", **target))[0] == 400  # no keyboard, still none
    assert (await fake.ok("editMessageReplyMarkup", **target, reply_markup=KEYBOARD))["reply_markup"] == KEYBOARD

    assert fake.api.flood_refusals() == []
    assert fake.api.group_load(GROUP) == 4  # the send and three real edits; a 400 posts nothing
    assert len(fake.api.refused("editMessageText", status=400)) == 3


async def test_form_encoded_calls_as_ptb_sends_them(fake: Fake) -> None:
    markup = '{"inline_keyboard": [[{"text": "Join", "callback_data": "v1:join:1"}]]}'
    response = await fake.http.post("sendMessage", data={"chat_id": str(GROUP), "text": "x", "reply_markup": markup})
    message_id = response.json()["result"]["message_id"]
    form = {"chat_id": str(GROUP), "message_id": str(message_id), "text": "x", "reply_markup": markup}
    response = await fake.http.post("editMessageText", data=form)
    assert (response.status_code, response.json()["description"]) == (400, NOT_MODIFIED)


async def test_the_answers_parse_as_telegram_messages(fake: Fake) -> None:
    text = Message.de_json(await fake.ok("sendMessage", chat_id=GROUP, text="hello", message_thread_id=7), None)
    assert (text.text, text.chat.id, text.message_thread_id) == ("hello", GROUP, 7)
    fake.clock.advance(1)
    poll = Message.de_json(
        await fake.ok("sendPoll", chat_id=ALICE, question="Rate us", options=["1", "2", "3"], is_anonymous=False),
        None,
    )
    assert poll.poll is not None and [o.text for o in poll.poll.options] == ["1", "2", "3"]
    assert not poll.poll.is_anonymous
    fake.clock.advance(1)
    response = await fake.http.post(
        "sendPhoto", data={"chat_id": str(ALICE), "caption": "new menu"}, files={"photo": ("menu.png", b"\x89PNG")}
    )
    photo = Message.de_json(response.json()["result"], None)
    assert photo.caption == "new menu" and photo.photo
    fake.clock.advance(1)
    edited = Message.de_json(
        await fake.ok("editMessageText", chat_id=GROUP, message_id=text.message_id, text="hello again"), None
    )
    assert (edited.message_id, edited.text) == (text.message_id, "hello again")


# --- switching the limits --------------------------------------------------------------------------------
async def test_the_limits_can_be_switched_off_and_the_old_rate_limit_still_works() -> None:
    clock = Clock()
    async for fake in started(FakeBotApi(now=clock, limits=False), clock):
        for n in range(100):
            assert (await fake.send(GROUP, f"m{n}"))[0] == 200
            assert (await fake.send(ALICE, f"p{n}"))[0] == 200
        assert fake.api.flood_refusals() == []
        assert fake.api.max_per_minute() == {GROUP: 100, ALICE: 100}

        fake.api.rate_limit_per_second = 5  # as tests/test_telegram_delivery.py sets it, on a running fake
        clock.advance(1)
        for n in range(5):
            assert (await fake.send(ALICE, f"q{n}"))[0] == 200  # only the overall limit, at 5
        assert_flood(*await fake.send(BOB, "6th"), retry_after=1)


async def test_the_limits_are_configurable() -> None:
    clock = Clock()
    api = FakeBotApi(now=clock, per_second=3, group_per_minute=4, private_per_second=0.25)
    async for fake in started(api, clock):
        for n in range(3):
            assert (await fake.send(GROUP, f"m{n}"))[0] == 200
        assert (await fake.send(OTHER_GROUP, "4th this second"))[0] == 429
        clock.advance(1)
        assert (await fake.send(GROUP, "4th this minute"))[0] == 200
        assert_flood(*await fake.send(GROUP, "5th this minute"), retry_after=59)
        assert (await fake.send(ALICE, "p1"))[0] == 200
        clock.advance(1)
        assert_flood(*await fake.send(ALICE, "p2"), retry_after=3)  # one message per 4 s


# --- getUpdates ------------------------------------------------------------------------------------------
async def test_get_updates_records_what_it_served_and_what_an_offset_confirmed(fake: Fake) -> None:
    for text in ("/start", "/checkin", "/points"):
        fake.api.push_update(message_update(fake.api, ALICE, user(ALICE), text))

    first = await fake.ok("getUpdates", offset=0, timeout=0)
    assert [u["update_id"] for u in first] == [1, 2, 3]
    again = await fake.ok("getUpdates", offset=0, timeout=0)  # not confirmed yet: served again
    assert [u["update_id"] for u in again] == [1, 2, 3]
    assert fake.api.confirmed_ids == set()

    assert [u["update_id"] for u in await fake.ok("getUpdates", offset=3, timeout=0, limit=1)] == [3]
    assert fake.api.confirmed_ids == {1, 2}
    fake.api.push_update(message_update(fake.api, BOB, user(BOB), "/start"))
    assert await fake.ok("getUpdates", offset=5, timeout=0) == []  # skips update 4 unseen
    assert fake.api.served_ids == {1, 2, 3}
    assert fake.api.confirmed_ids == {1, 2, 3, 4}
    assert fake.api.confirmed_ids - fake.api.served_ids == {4}  # what a test of "nothing lost" catches
    assert fake.api.flood_refusals() == []


@pytest.mark.filterwarnings("ignore::telegram.warnings.PTBDeprecationWarning")  # RetryAfter's own int/timedelta
async def test_python_telegram_bot_sees_retry_after_and_not_modified() -> None:
    clock = Clock()
    api = await FakeBotApi(now=clock).start()
    try:
        async with Bot(api.token, base_url=api.base_url) as bot:
            sent = await bot.send_message(GROUP, "board")
            with pytest.raises(BadRequest, match="not modified"):
                await bot.edit_message_text("board", chat_id=GROUP, message_id=sent.message_id)
            for n in range(19):
                clock.advance(1)
                await bot.send_message(GROUP, f"m{n}")
            clock.advance(1)
            with pytest.raises(RetryAfter, match=r"Retry in (40 seconds|0:00:40)"):
                await bot.send_message(GROUP, "one too many")
    finally:
        await api.stop()
