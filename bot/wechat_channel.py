"""The WeChat Official Account adapter: signed (and, in safe mode, encrypted) XML in, neutral Inbound to the
dispatcher, and the answer back in the HTTP response when it is ready within the reply budget (4 s of
WeChat's 5); a later answer goes out through the customer-service API. A retried message (same MsgId, or
FromUserName + CreateTime for events) is handled once and gets the same answer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from typing import Any

from wechatpy import parse_message
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature

from bot.config import Settings
from bot.runtime import Runtime
from bot.web import LimitedHandler, WebServer
from bot.wechat_client import ShopWeChatClient
from bot.wechat_push import CHANNEL, WeChatPusher, with_choices
from handlers.dispatch import Dispatcher
from handlers.messages import Button, Identity, Inbound, Reply

log = logging.getLogger(__name__)

CHOICES_VALID_SECONDS = 24 * 3600
ANSWERS_KEPT = 10_000
ANSWERING_AT_ONCE = 32
"""Answers remembered for WeChat's retries (it retries within seconds; this is plenty)."""


class WeChatChannel:
    """Implements the dispatcher's ChannelPort for WeChat and owns the /wechat endpoint."""

    bot_username: str | None = None

    def __init__(self, settings: Settings, dispatcher: Dispatcher) -> None:
        self.settings = settings
        self.config = settings.wechat
        self.dispatcher = dispatcher
        self.token = self.config.token.get_secret_value()
        self.crypto = (
            WeChatCrypto(self.token, self.config.encoding_aes_key.get_secret_value(), self.config.app_id)
            if self.config.mode != "plain"
            else None
        )
        self.client = ShopWeChatClient(self.config.app_id, self.config.app_secret.get_secret_value(),
                                       self.config.api_base_url)  # fmt: skip
        self.pusher: WeChatPusher | None = None
        self.runtime: Runtime | None = None
        self._answers: OrderedDict[str, asyncio.Future[list[Reply]]] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Answers run a few at a time: under a burst the first ones still finish inside WeChat's window
        # instead of all finishing together at the end.
        self._slots = asyncio.Semaphore(ANSWERING_AT_ONCE)

    async def attach(self, runtime: Runtime, web: WebServer) -> None:
        self.runtime = runtime
        choice_line = runtime.deps.texts.t("wechat.choice")
        self.pusher = WeChatPusher(self.config, runtime.deps.db, self.client, choice_line, runtime.deps.clock,
                                   staff=runtime.settings.staff.wechat)  # fmt: skip
        runtime.outbox.register(self.pusher)
        web.mount("/wechat", WeChatHandler, channel=self)

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    # --- ChannelPort -------------------------------------------------------------------------------
    def is_vip_chat(self, msg: Inbound) -> bool:
        return True  # followers of the Official Account are the community; there are no group chats

    async def is_staff(self, msg: Inbound) -> bool:
        return msg.sender.external_id in self.settings.staff.wechat

    async def is_group_member(self, msg: Inbound) -> bool:
        return True

    # --- messages ----------------------------------------------------------------------------------
    def verify_plain(self, query: dict[str, str]) -> bool:
        try:
            check_signature(self.token, query.get("signature", ""), query.get("timestamp", ""), query.get("nonce", ""))
        except InvalidSignatureException:
            return False
        return True

    async def to_inbound(self, message: Any) -> Inbound | None:
        """A parsed wechatpy message as an Inbound; None for what needs no handler (and records unsubscribes)."""
        assert self.runtime is not None
        openid = str(message.source)
        kind = message.type
        key = (
            f"{CHANNEL}:msg:{message.id}"
            if getattr(message, "id", None)
            else f"{CHANNEL}:event:{openid}:{message.create_time}"
        )
        text, button = "", None
        now = self.runtime.deps.now_ts()
        if kind == "text":
            text = str(message.content or "").strip()
            if text.isdigit() and len(text) <= 2:  # a numbered choice stands for a button
                async with self.runtime.deps.db.read() as repos:
                    button = await repos.channel_state.choice(CHANNEL, openid, int(text), now - CHOICES_VALID_SECONDS)
        elif kind == "event":
            event = str(message.event)
            if event == "subscribe":
                text = "/start"
            elif event == "unsubscribe":
                async with self.runtime.deps.db.transaction() as repos:
                    await repos.channel_state.unsubscribed(CHANNEL, openid, now)
                return None
            elif event == "click":
                text = self.config.menu.get(str(message.key), "/help")
            else:
                return None
        else:
            text = ""
        identity = Identity(CHANNEL, openid, self.runtime.deps.texts.t("wechat.name", tail=openid[-4:]), None)
        return Inbound(
            channel=CHANNEL, chat_id=openid, sender=identity, text="" if button else text, is_group=False, key=key,
            message_id=str(getattr(message, "id", "") or ""), addressed_to_bot=True, button=button,
        )  # fmt: skip

    async def answer(self, message: Any) -> list[Reply]:
        """Handle a message once; a retry of the same message waits for (and gets) the same answer."""
        assert self.runtime is not None
        msg = await self.to_inbound(message)
        if msg is None:
            return []
        existing = self._answers.get(msg.key)
        if existing is not None:
            return await asyncio.shield(existing)
        future: asyncio.Future[list[Reply]] = asyncio.get_running_loop().create_future()
        self._answers[msg.key] = future
        while len(self._answers) > ANSWERS_KEPT:
            self._answers.popitem(last=False)
        try:
            # The dispatcher's intake records the member's message, which opens their push window.
            async with self._slots:
                replies = await self.dispatcher.handle(msg, self)
        except Exception as exc:
            future.set_exception(exc)
            raise
        future.set_result(replies)
        return replies

    def render(self, replies: list[Reply]) -> tuple[str, list[Button]]:
        """All replies as one text (WeChat answers once), buttons as numbered choices."""
        assert self.runtime is not None
        texts = self.runtime.deps.texts
        buttons = [b for r in replies for b in r.buttons]
        parts = []
        for reply in replies:
            part = reply.text
            if reply.document is not None or reply.image is not None:
                part += "\n" + texts.t("wechat.attachment")
            parts.append(part)
        return with_choices("\n\n".join(p for p in parts if p), buttons, texts.t("wechat.choice")), buttons

    async def remember_choices(self, openid: str, buttons: list[Button]) -> None:
        if buttons and self.runtime is not None:
            async with self.runtime.deps.db.transaction() as repos:
                await repos.channel_state.set_choices(CHANNEL, openid, [(b.label, b.data) for b in buttons],
                                                      self.runtime.deps.now_ts())  # fmt: skip

    async def deliver_late(self, openid: str, task: asyncio.Task[list[Reply]]) -> None:
        """The answer missed the 5-second window: send it through the customer-service API."""
        try:
            replies = await task
        except Exception:
            log.exception("WeChat message from %s failed after the reply window", openid)
            return
        if not replies or self.pusher is None:
            return
        text, buttons = self.render(replies)
        result = await self.pusher.send_now(openid, text, buttons)
        log.info("late WeChat answer to %s: %s %s", openid, result.outcome.value, result.error)

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class WeChatHandler(LimitedHandler):
    """GET: the URL check. POST: messages and events, plain or encrypted, answered in the same mode."""

    def initialize(self, channel: WeChatChannel, max_body: int) -> None:  # type: ignore[override]
        self.max_body = max_body
        self.channel = channel

    def _query(self) -> dict[str, str]:
        return {k: self.get_query_argument(k, "") for k in
                ("signature", "timestamp", "nonce", "echostr", "encrypt_type", "msg_signature", "openid")}  # fmt: skip

    def _refuse(self, status: int, reason: str) -> None:
        log.warning("wechat: refused %s (%s) from %s", reason, status, self.request.remote_ip)
        self.set_status(status)
        self.finish(reason)

    async def get(self) -> None:
        query = self._query()
        if not self.channel.verify_plain(query):
            self._refuse(403, "bad signature")
            return
        self.finish(query["echostr"])

    async def post(self) -> None:
        query = self._query()
        config = self.channel.config
        encrypted = query["encrypt_type"] == "aes"
        if (encrypted and self.channel.crypto is None) or (not encrypted and config.mode == "safe"):
            self._refuse(400, "wrong encryption mode")
            return
        if not encrypted and not self.channel.verify_plain(query):
            self._refuse(403, "bad signature")
            return
        try:
            body = self.request.body.decode("utf-8")
            if encrypted:
                assert self.channel.crypto is not None
                body = self.channel.crypto.decrypt_message(body, query["msg_signature"], query["timestamp"],
                                                           query["nonce"])  # fmt: skip
            message = parse_message(body)
            if message is None or not getattr(message, "source", None):
                raise ValueError("not a WeChat message")
        except (InvalidSignatureException, InvalidAppIdException):
            self._refuse(403, "bad signature")
            return
        except Exception as exc:  # broken XML, wrong encoding, not WeChat: never reaches a handler
            self._refuse(400, f"malformed body ({type(exc).__name__})")
            return
        task = asyncio.ensure_future(self.channel.answer(message))
        # The budget counts from the request's arrival: WeChat's 5 seconds started then.
        budget = config.reply_budget_seconds - (time.time() - self.request._start_time)
        try:
            replies = await asyncio.wait_for(asyncio.shield(task), max(budget, 0.01))
        except TimeoutError:
            self.channel.track(asyncio.ensure_future(self.channel.deliver_late(str(message.source), task)))
            self.finish("success")
            return
        if not replies:
            self.finish("success")
            return
        text, buttons = self.channel.render(replies)
        await self.channel.remember_choices(str(message.source), buttons)
        xml = TextReply(content=text, message=message).render()
        if encrypted:
            assert self.channel.crypto is not None
            xml = self.channel.crypto.encrypt_message(xml, query["nonce"], query["timestamp"])
        self.set_header("Content-Type", "application/xml; charset=utf-8")
        self.finish(xml)
