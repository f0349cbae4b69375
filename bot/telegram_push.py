"""Delivers queued pushes on Telegram: its own Bot (no PTB rate limiter: the outbox paces it), and the
translation of Telegram's answers into sent / retry / failed / uncertain.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from datetime import timedelta

import httpx
from telegram import Bot
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest
from telegram.warnings import PTBDeprecationWarning

from bot.config import Settings
from bot.delivery import NativePoll, Outcome, PushResult
from bot.telegram_buttons import button_rows
from handlers.messages import Button

CHANNEL = "telegram"

log = logging.getLogger(__name__)

# Errors raised before a request left this machine: retrying them cannot send a message twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int will become a timedelta; both are handled
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def classify(exc: TelegramError) -> PushResult:
    """What a failed sendMessage means for the delivery row."""
    if isinstance(exc, RetryAfter):
        return PushResult(Outcome.RETRY, str(exc), retry_after=_retry_seconds(exc))
    if isinstance(exc, Forbidden):
        return PushResult(Outcome.FAILED, exc.message)
    if isinstance(exc, ChatMigrated):
        return PushResult(Outcome.FAILED, f"chat migrated to {exc.new_chat_id}")
    if isinstance(exc, BadRequest):
        return PushResult(Outcome.FAILED, exc.message)
    if isinstance(exc, TimedOut | NetworkError):
        cause = exc.__cause__
        if isinstance(exc, TimedOut) and not isinstance(cause, _NOT_SENT):
            # The request may have reached Telegram: sending again could deliver it twice.
            return PushResult(Outcome.UNCERTAIN, f"timed out: {exc.message}")
        if isinstance(cause, httpx.HTTPError) and not isinstance(cause, _NOT_SENT):
            return PushResult(Outcome.UNCERTAIN, f"connection lost: {exc.message}")
        return PushResult(Outcome.RETRY, f"network: {exc.message}")
    return PushResult(Outcome.FAILED, f"{type(exc).__name__}: {exc}")


class TelegramPusher:
    channel = CHANNEL

    def __init__(self, settings: Settings) -> None:
        delivery = settings.delivery
        self.per_second = delivery.telegram_per_second
        self._group_interval = 60.0 / delivery.group_per_minute
        self._staff_chat = settings.staff.telegram_chat
        request = HTTPXRequest(connection_pool_size=delivery.concurrency + 4, read_timeout=20, write_timeout=20)
        self.bot = Bot(settings.telegram_token, base_url=settings.telegram.base_url, request=request)

    @property
    def has_staff_chat(self) -> bool:
        return self._staff_chat is not None

    async def start(self) -> None:
        await self.bot.initialize()

    async def stop(self) -> None:
        await self.bot.shutdown()

    def chat_interval(self, target_kind: str, target: str) -> float:
        if target_kind == "user":
            return 1.0  # about one message a second into one private chat
        if target_kind == "chat" and target.startswith("-"):
            return self._group_interval
        return 1.0

    async def push(
        self,
        target_kind: str,
        target: str,
        text: str,
        buttons: Sequence[Button],
        *,
        image: bytes | None = None,
        poll: NativePoll | None = None,
    ) -> PushResult:
        chat_id: int | str
        if target_kind == "staff":
            if self._staff_chat is None:
                return PushResult(Outcome.FAILED, "no staff chat configured")
            chat_id = self._staff_chat
        else:
            chat_id = int(target) if target.lstrip("-").isdigit() else target
        try:
            if poll is not None:
                sent = await self.bot.send_poll(
                    chat_id=chat_id, question=poll.question[:300], options=[o[:100] for o in poll.options],
                    is_anonymous=False, allows_multiple_answers=poll.multi,
                )  # fmt: skip
                return PushResult(
                    Outcome.SENT, message_id=str(sent.message_id), native_poll_id=sent.poll.id if sent.poll else None
                )
            if image is not None:
                sent = await self.bot.send_photo(chat_id=chat_id, photo=image, caption=text[:1024])
            else:
                sent = await self.bot.send_message(chat_id=chat_id, text=text[:4096], reply_markup=button_rows(buttons))
        except TelegramError as exc:
            return classify(exc)
        return PushResult(Outcome.SENT, message_id=str(sent.message_id))

    async def edit(self, chat_id: str, message_id: str, text: str, buttons: Sequence[Button]) -> bool:
        try:
            await self.bot.edit_message_text(
                text=text[:4096], chat_id=int(chat_id), message_id=int(message_id), reply_markup=button_rows(buttons)
            )
        except BadRequest as exc:
            return "not modified" in exc.message  # the text was already current
        except TelegramError as exc:
            log.info("editing message %s in %s failed: %s", message_id, chat_id, exc)
            return False
        return True
