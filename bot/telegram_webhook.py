"""The Telegram webhook endpoint: checks the secret header, parses the body, queues the update.

A wrong or missing `X-Telegram-Bot-Api-Secret-Token` gets 403, a body that is not an update gets 400;
only a well-formed update from Telegram reaches the Application's update queue.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any

from telegram import Update
from telegram.ext import Application

from bot.web import LimitedHandler

log = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"


class TelegramWebhookHandler(LimitedHandler):
    def initialize(  # type: ignore[override]
        self, ptb_app: Application[Any, Any, Any, Any, Any, Any], secret: str, max_body: int
    ) -> None:
        self.max_body = max_body
        self.ptb_app = ptb_app
        self.secret = secret

    def _refuse(self, status: int, reason: str) -> None:
        self.set_status(status)
        self.finish({"ok": False, "error": reason})

    async def post(self) -> None:
        given = self.request.headers.get(SECRET_HEADER, "")
        if self.secret and not hmac.compare_digest(given.encode(), self.secret.encode()):
            log.warning("webhook: refused a request with a missing or wrong secret from %s", self.request.remote_ip)
            self._refuse(403, "forbidden")
            return
        try:
            data = json.loads(self.request.body.decode("utf-8"))
            if not isinstance(data, dict) or not isinstance(data.get("update_id"), int):
                raise ValueError("not an update")
            update = Update.de_json(data, self.ptb_app.bot)
        except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
            log.warning("webhook: refused a malformed body: %s", exc)
            self._refuse(400, "malformed update")
            return
        await self.ptb_app.update_queue.put(update)
        self.finish({"ok": True})
