"""Delivers queued pushes (announcements, greetings, staff notices) on Telegram through the sender, at
bulk priority (staff notices at staff priority): the sender paces them and waits out flood limits, so a
push only ever comes back as sent, failed or uncertain.

Staff notices go to `staff.telegram_chat` when it is set, else privately to each id in `staff.telegram`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from telegram.error import TelegramError

from bot.app.config import Settings
from bot.delivery.outbox import ChannelPusher, Push, PushResult
from bot.delivery.sender import Delivered, Job, Outcome, Priority, Sender
from bot.telegram.sender import chat_target
from handlers.core.messages import Button

CHANNEL = "telegram"

log = logging.getLogger(__name__)


class TelegramPusher(ChannelPusher):
    channel = CHANNEL
    claims_itself = True
    """The outbox hands it the row's claim: the row is taken right before its message leaves."""

    def __init__(self, settings: Settings, sender: Sender) -> None:
        self.per_second = settings.delivery.telegram_per_second
        self.sender = sender
        self._edit_interval = float(settings.sales.edit_interval_seconds)
        staff = settings.staff
        self._staff_targets = [str(staff.telegram_chat)] if staff.telegram_chat else [str(i) for i in staff.telegram]

    @property
    def has_staff_chat(self) -> bool:
        return bool(self._staff_targets)

    # chat_interval stays 0: the sender keeps every chat's limit

    async def deliver(self, push: Push) -> PushResult:
        if push.target_kind == "staff":
            scopes, priority = self._staff_targets, Priority.STAFF
            if not scopes:
                return PushResult(Outcome.FAILED, "no staff chat or staff id configured")
        else:
            scopes, priority = [push.target], Priority.BULK
        payload: dict[str, object] = {"kind": "push", "text": push.text,
                                      "buttons": [(b.label, b.data) for b in push.buttons]}  # fmt: skip
        if push.image is not None:
            payload["kind"] = "photo"
        if (poll := push.poll) is not None:
            payload = {"kind": "poll", "question": poll.question, "options": list(poll.options), "multi": poll.multi}
        loop = asyncio.get_running_loop()
        waits: list[asyncio.Future[Delivered]] = []
        for index, scope in enumerate(scopes):
            done: asyncio.Future[Delivered] = loop.create_future()
            waits.append(done)
            self.sender.submit(Job(scope, priority, dict(payload), blob=push.image,
                                   claim=push.claim if index == 0 else None,
                                   on_result=_resolver(done), skip_on_stop=True))  # fmt: skip
        results = await asyncio.gather(*waits)
        first = results[0]
        if first.outcome is Outcome.SKIPPED:
            return PushResult(Outcome.SKIPPED)
        best = next((r for r in results if r.outcome is Outcome.SENT), first)
        return PushResult(best.outcome, best.error, message_id=best.message_id,
                          native_poll_id=best.extra if isinstance(best.extra, str) else None)  # fmt: skip

    async def edit(self, chat_id: str, message_id: str, text: str, buttons: Sequence[Button]) -> bool:
        """Queue an edit of a live post; a newer text replaces one still waiting for the group's turn."""
        payload = {"kind": "edit", "text": text, "message_id": message_id,
                   "buttons": [(b.label, b.data) for b in buttons]}  # fmt: skip
        self.sender.submit(Job(chat_id, Priority.GROUP, payload, live_key=f"edit:{message_id}",
                               min_interval=self._edit_interval))  # fmt: skip
        return True


    async def delete(self, chat_id: str, message_id: str) -> bool:
        """Delete a post (a recalled announcement) with deleteMessage. Telegram lets a bot delete its own group
        message for 48 hours; a refusal (too old, already gone) is False. Called directly, not paced: a recall
        deletes a handful of posts, one per VIP group."""
        bot = getattr(self.sender.transport, "bot", None)
        if bot is None:
            return False
        try:
            return bool(await bot.delete_message(chat_id=chat_target(chat_id), message_id=int(message_id)))
        except TelegramError as exc:
            log.info("could not delete message %s in %s: %s", message_id, chat_id, exc)
            return False


def _resolver(done: asyncio.Future[Delivered]) -> Callable[[Job, Delivered], Awaitable[None]]:
    async def resolve(job: Job, result: Delivered) -> None:
        if not done.done():
            done.set_result(result)

    return resolve
