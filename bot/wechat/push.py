"""Delivers queued pushes on WeChat through the customer-service message API (客服消息) while the member's
48-hour window is open (at most 5 messages in it), else through a configured template message, else it
records the delivery as undeliverable. Buttons become numbered choices the member answers with a number.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import requests
from wechatpy.exceptions import WeChatClientException

from bot.app.config import WeChatSettings
from bot.delivery.outbox import ChannelPusher, Outcome, Push, PushResult
from bot.wechat.client import ShopWeChatClient
from handlers.core.clock import Clock
from handlers.core.messages import Button
from storage.db.database import Database

log = logging.getLogger(__name__)

CHANNEL = "wechat"
WINDOW_CLOSED = {45015, 45047}
"""errcodes for 'the member has not written for 48 hours' and 'too many messages in the window'."""
BUSY = {-1, 45009}


def with_choices(text: str, buttons: Sequence[Button], choice_line: str) -> str:
    """Buttons as numbered lines, e.g. '回复 1 抢购'; `choice_line` is the catalog text with {n} and {label}."""
    lines = [choice_line.format(n=index, label=button.label) for index, button in enumerate(buttons, start=1)]
    return "\n".join([text, *lines]) if lines else text


class WeChatPusher(ChannelPusher):
    channel = CHANNEL

    def __init__(
        self, settings: WeChatSettings, db: Database, client: ShopWeChatClient, choice_line: str, clock: Clock,
        staff: Sequence[str] = (),
    ) -> None:  # fmt: skip
        self.settings = settings
        self.staff = list(staff)
        """OpenIDs of staff: staff notices go to each of them (an Official Account has no group chat)."""
        self.clock = clock
        self.per_second = settings.per_second
        self.db = db
        self.client = client
        self.choice_line = choice_line

    @property
    def has_staff_chat(self) -> bool:
        return bool(self.staff)

    async def deliver(self, push: Push) -> PushResult:
        if push.target_kind == "staff":
            if not self.staff:
                return PushResult(Outcome.FAILED, "no staff OpenID configured (staff.wechat)")
            results = [await self.deliver(Push("user", openid, push.text, push.buttons)) for openid in self.staff]
            return next((r for r in results if r.outcome is Outcome.SENT), results[0])
        if push.target_kind != "user":
            return PushResult(Outcome.FAILED, "WeChat has no group chats")
        target, text, buttons = push.target, push.text, push.buttons
        body = with_choices(text, buttons, self.choice_line)
        now = int(self.clock.now().timestamp())  # the same clock that recorded the member's last message
        opened_after = now - self.settings.window_hours * 3600
        async with self.db.transaction() as repos:
            in_window = await repos.channel_state.take_window_slot(
                CHANNEL, target, opened_after, self.settings.window_messages
            )
            if in_window and buttons:
                await repos.channel_state.set_choices(CHANNEL, target, [(b.label, b.data) for b in buttons], now)
        if in_window:
            result = await self._call(self.client.message.send_text, target, body)
            if result.outcome is not Outcome.FAILED or not result.error.startswith("window"):
                return result
        if self.settings.template_id:
            data = {"first": {"value": body[:200]}, "remark": {"value": ""}}
            return await self._call(self.client.message.send_template, target, self.settings.template_id, data)
        return PushResult(Outcome.FAILED, "outside the 48-hour customer-service window and no template set")

    async def send_now(self, openid: str, text: str, buttons: Sequence[Button]) -> PushResult:
        """A late answer to the member's own message (their window is open): straight to the API."""
        return await self.deliver(Push("user", openid, text, tuple(buttons)))

    async def edit(self, chat_id: str, message_id: str, text: str, buttons: Sequence[Button]) -> bool:
        return False  # WeChat messages cannot be edited

    async def delete(self, chat_id: str, message_id: str) -> bool:
        """WeChat has no call to take back a customer-service message: a recall cannot delete it."""
        return False

    async def _call(self, method: object, *args: object) -> PushResult:
        try:
            await asyncio.to_thread(method, *args)  # type: ignore[arg-type]
        except WeChatClientException as exc:
            log.warning("WeChat API error errcode=%s errmsg=%s", exc.errcode, exc.errmsg)
            if exc.errcode in WINDOW_CLOSED:
                return PushResult(Outcome.FAILED, f"window closed (errcode {exc.errcode})")
            if exc.errcode in BUSY:
                return PushResult(Outcome.RETRY, f"busy (errcode {exc.errcode})")
            return PushResult(Outcome.FAILED, f"errcode {exc.errcode}: {exc.errmsg}")
        except requests.ConnectionError as exc:
            return PushResult(Outcome.RETRY, f"connection: {exc}")
        except requests.RequestException as exc:
            return PushResult(Outcome.UNCERTAIN, f"request: {exc}")
        return PushResult(Outcome.SENT)
