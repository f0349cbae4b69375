"""The Telegram webhook endpoint: checks the secret header, parses the body, stores the update.

A wrong or missing `X-Telegram-Bot-Api-Secret-Token` gets 403, and so does every request when no secret is set
(the configuration always provides one: see `WebhookSettings`). A body that is not an update, or an update
whose fields the bot reads have the wrong shape or ids beyond SQLite's range (`update_problem`), gets 400.
The 200 that tells Telegram the update arrived is sent only once it is stored; when storage fails the
answer is 503, so Telegram delivers it again later.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from bot.app.web import LimitedHandler
from bot.telegram.intake import update_problem
from storage.db.preflight import is_storage_fault

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class TelegramWebhookHandler(LimitedHandler):
    def initialize(self, channel: Any, secret: str, max_body: int) -> None:  # type: ignore[override]
        self.max_body = max_body
        self.channel = channel
        self.secret = secret

    def _refuse(self, status: int, reason: str) -> None:
        self.set_status(status)
        self.finish({"ok": False, "error": reason})

    async def post(self) -> None:
        given = self.request.headers.get(SECRET_HEADER, "")
        if not self.secret or not hmac.compare_digest(given.encode(), self.secret.encode()):
            log.warning("webhook: refused a request with a missing or wrong secret from %s", self.request.remote_ip)
            self._refuse(403, "forbidden")
            return
        try:
            data = json.loads(self.request.body.decode("utf-8"))
            problem = update_problem(data)
            if problem is not None:
                raise ValueError(problem)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError, RecursionError) as exc:
            log.warning("webhook: refused a malformed body: %s", str(exc)[:200])
            self._refuse(400, "malformed update")
            return
        try:
            await self.channel.receive(data)
        except Exception as exc:
            if not is_storage_fault(exc):
                log.exception("webhook: storing update %s failed", data.get("update_id"))
            self.channel.store_failed([data], exc)
            self._refuse(503, "try again later")
            return
        self.finish({"ok": True})
