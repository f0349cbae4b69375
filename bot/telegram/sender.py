"""Telegram's side of the sender: the limits of each chat, the Bot API call for each job, and what
Telegram's answers mean (sent, flood wait, retry, uncertain, failed).

Limits (Bot FAQ): about one message a second into one private chat, 20 a minute into one group (edits
counted too, the cautious reading), 30 a second overall; `answerCallbackQuery` posts nothing into a chat
and waits for no chat's limit. We stay under each with a margin (see `DeliverySettings`).
"""

from __future__ import annotations

import html
import logging
import warnings
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import httpx
from telegram import Bot, InputFile, ReplyParameters
from telegram.constants import ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.warnings import PTBDeprecationWarning

from bot.app.config import Settings
from bot.delivery.sender import Delivered, Job, Outcome, ScopeLimit
from bot.telegram.buttons import button_rows
from handlers.core.messages import Button

log = logging.getLogger(__name__)

CALLBACK_SCOPE = "callback"
# Errors raised before a request left this machine: retrying them cannot send a message twice.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int will become a timedelta; both are handled
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def classify(exc: TelegramError) -> Delivered:
    """What a failed Bot API call means."""
    if isinstance(exc, RetryAfter):
        return Delivered(Outcome.FLOOD, str(exc), retry_after=_retry_seconds(exc))
    if isinstance(exc, Forbidden):
        return Delivered(Outcome.FAILED, exc.message)
    if isinstance(exc, ChatMigrated):
        return Delivered(Outcome.FAILED, f"chat migrated to {exc.new_chat_id}")
    if isinstance(exc, BadRequest):
        return Delivered(Outcome.FAILED, exc.message)
    if isinstance(exc, TimedOut | NetworkError):
        cause = exc.__cause__
        if isinstance(exc, TimedOut) and not isinstance(cause, _NOT_SENT):
            # The request may have reached Telegram: sending again could deliver it twice.
            return Delivered(Outcome.UNCERTAIN, f"timed out: {exc.message}")
        if isinstance(cause, httpx.HTTPError) and not isinstance(cause, _NOT_SENT):
            return Delivered(Outcome.UNCERTAIN, f"connection lost: {exc.message}")
        return Delivered(Outcome.RETRY, f"network: {exc.message}")
    return Delivered(Outcome.FAILED, f"{type(exc).__name__}: {exc}")


def chat_target(scope: str) -> int | str:
    return int(scope) if scope.lstrip("-").isdigit() else scope


def flood_scope(scope: str) -> str:
    """The kind of chat a job went to, as /metrics counts 429s: a button's toast, a group or a private chat."""
    if scope == CALLBACK_SCOPE:
        return "callback"
    return "group" if scope.startswith("-") or scope.startswith("@") else "private"


def mention_html(who: dict[str, Any] | None) -> str:
    if not who:
        return ""
    return f'<a href="tg://user?id={int(who["id"])}">{html.escape(str(who.get("name") or "?"))}</a> '


def markup(raw: Sequence[Sequence[str]] | None) -> Any:
    return button_rows([Button(label, data) for label, data in raw or ()])


class TelegramTransport:
    """Turns sender jobs into Bot API calls on its own `Bot` (no PTB rate limiter: the sender paces)."""

    def __init__(self, settings: Settings, bot: Bot) -> None:
        delivery = settings.delivery
        self.bot = bot
        per_minute = delivery.group_per_minute
        gap = min(delivery.group_gap_seconds, 60.0 / per_minute)
        self._group = ScopeLimit(count=int(per_minute), window=60.0, gap=gap)
        self.board_interval = 60.0 / max(per_minute - delivery.board_reserve_per_minute, 1.0)
        """Seconds between two sends of a group's board: it leaves the reserve to other messages."""
        self._private = ScopeLimit(count=1, window=delivery.private_gap_seconds, gap=delivery.private_gap_seconds)
        self.floods: Counter[str] = Counter()
        """Where Telegram answered 429 (`flood_scope`) -> how often (for /metrics)."""
        if not settings.telegram.rate_limiter:  # benchmarks against a fake server measure our code, not limits
            self._group = self._private = ScopeLimit(count=1_000_000, window=1.0, gap=0.0)
            self.board_interval = 0.0

    def limit(self, scope: str) -> ScopeLimit | None:
        if scope == CALLBACK_SCOPE:
            return None
        return self._group if scope.startswith("-") else self._private

    async def deliver(self, jobs: list[Job]) -> Delivered:
        head = jobs[0]
        payload = head.payload
        if head.render is not None:
            drawn = await head.render()
            if drawn is None:
                return Delivered(Outcome.SENT)  # nothing to show any more
            payload = drawn
        try:
            return await self._call(payload, head, jobs)
        except TelegramError as exc:
            result = classify(exc)
        if result.outcome is Outcome.FLOOD:
            self.floods[flood_scope(head.scope)] += 1
        if result.outcome is Outcome.UNCERTAIN and payload.get("kind") != "push":
            # A reply sent twice is better than a reply lost; only pushes are left to staff to resend.
            return Delivered(Outcome.RETRY, result.error)
        if payload.get("kind") == "edit" and "not modified" in result.error:
            return Delivered(Outcome.SENT)
        return result

    async def _call(self, payload: dict[str, Any], head: Job, jobs: list[Job]) -> Delivered:
        bot = self.bot
        kind = payload.get("kind", "text")
        chat_id = chat_target(head.scope)
        thread = payload.get("thread")
        if kind == "callback":
            text = payload.get("text") or None
            await bot.answer_callback_query(payload["query_id"], text=text, show_alert=bool(payload.get("alert")))
            return Delivered(Outcome.SENT)
        if kind in ("edit", "board") and payload.get("message_id"):
            await bot.edit_message_text(
                text=payload["text"][:4096], chat_id=chat_id, message_id=int(payload["message_id"]),
                reply_markup=markup(payload.get("buttons")), parse_mode=payload.get("parse_mode"),
            )  # fmt: skip
            return Delivered(Outcome.SENT, message_id=str(payload["message_id"]))
        if kind == "pin":
            await bot.pin_chat_message(
                chat_id=chat_id, message_id=int(payload["message_id"]), disable_notification=True
            )
            return Delivered(Outcome.SENT)
        if kind == "poll":
            sent = await bot.send_poll(
                chat_id=chat_id, question=payload["question"][:300], options=[o[:100] for o in payload["options"]],
                is_anonymous=False, allows_multiple_answers=bool(payload.get("multi")),
            )  # fmt: skip
            return Delivered(Outcome.SENT, message_id=str(sent.message_id), extra=sent.poll.id if sent.poll else None)
        caption = str(payload.get("text", ""))
        if kind == "photo":
            sent = await bot.send_photo(chat_id=chat_id, photo=head.blob, caption=caption[:1024],
                                        message_thread_id=thread)  # fmt: skip
            return Delivered(Outcome.SENT, message_id=str(sent.message_id))
        if kind == "document":
            document = InputFile(head.blob or b"", filename=str(payload.get("filename") or "file"))
            sent = await bot.send_document(chat_id=chat_id, document=document, caption=caption[:1024],
                                           message_thread_id=thread)  # fmt: skip
            return Delivered(Outcome.SENT, message_id=str(sent.message_id))
        text, parse_mode, quote = self._text_of([payload] if head.render is not None else [j.payload for j in jobs])
        sent = await bot.send_message(
            chat_id=chat_id, text=text[:4096], parse_mode=parse_mode, message_thread_id=thread,
            reply_parameters=quote, reply_markup=markup(payload.get("buttons")),
        )  # fmt: skip
        return Delivered(Outcome.SENT, message_id=str(sent.message_id))

    @staticmethod
    def _text_of(payloads: list[dict[str, Any]]) -> tuple[str, str | None, ReplyParameters | None]:
        """One job as it is (quoting its message); several coalesced ones as lines naming their members."""
        if len(payloads) == 1:
            payload = payloads[0]
            quote = None
            if payload.get("quote"):
                quote = ReplyParameters(message_id=int(payload["quote"]), allow_sending_without_reply=True)
            if payload.get("mention"):
                return mention_html(payload["mention"]) + html.escape(str(payload["text"])), ParseMode.HTML, quote
            return str(payload["text"]), None, quote
        lines: list[str] = []
        seen: set[tuple[Any, str]] = set()
        for payload in payloads:
            who = payload.get("mention") or payload.get("who")
            key = (who.get("id") if who else None, str(payload["text"]))
            if key in seen:
                continue  # the same answer twice to one member (a repeated command) is said once
            seen.add(key)
            lines.append(mention_html(who) + html.escape(str(payload["text"])))
        return "\n".join(lines), ParseMode.HTML, None
