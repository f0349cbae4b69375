"""A fake Telegram Bot API server on 127.0.0.1 for end-to-end tests and benchmarks.

It answers ``POST /bot<token>/<method>`` like Telegram (``{"ok": true, "result": ...}``), records every
call, serves queued updates to ``getUpdates`` and can be told to answer 429 with ``retry_after``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from tornado.httpserver import HTTPServer
from tornado.httputil import parse_body_arguments
from tornado.web import Application, RequestHandler

BOT_ID = 7000001
BOT_USERNAME = "vip_test_bot"


@dataclass
class Call:
    method: str
    params: dict[str, Any]
    at: float
    status: int = 200


def _decode(value: str) -> Any:
    """PTB sends complex values JSON-encoded inside form fields; plain strings stay strings."""
    if value[:1] in "{[" or value in ("true", "false", "null"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    try:
        return int(value)
    except ValueError:
        return value


@dataclass
class FakeBotApi:
    token: str = "123456:TEST-TOKEN"
    admins: dict[int, list[int]] = field(default_factory=dict)
    """chat id -> user ids returned by getChatAdministrators."""
    calls: list[Call] = field(default_factory=list)
    rate_limit_per_second: float | None = None
    """When set, sendMessage beyond this rate gets HTTP 429 with retry_after."""
    fail: dict[str, Callable[[dict[str, Any]], tuple[int, dict[str, Any]] | None]] = field(default_factory=dict)
    """method -> hook returning (status, body) to answer instead, or None to answer normally."""
    port: int = 0
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _update_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _message_ids: itertools.count = field(default_factory=lambda: itertools.count(1000))
    _new_updates: asyncio.Event | None = None
    _server: HTTPServer | None = None
    _window: list[float] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    async def start(self) -> FakeBotApi:
        self._new_updates = asyncio.Event()
        app = Application([(r"/bot([^/]+)/(\w+)", _MethodHandler, {"api": self})])
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(1024)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._server = HTTPServer(app)
        self._server.add_sockets([sock])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()

    # --- what tests look at ----------------------------------------------------------------------
    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        """Parameters of the successful calls of `method`, in order."""
        return [c.params for c in self.calls if c.method == method and c.status == 200]

    def refused(self, method: str = "sendMessage", status: int = 429) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method and c.status == status]

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [p["text"] for p in self.sent() if chat_id is None or int(p["chat_id"]) == chat_id]

    def clear(self) -> None:
        self.calls.clear()

    async def wait_for(self, count: int, method: str = "sendMessage", timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait (on the event loop, bounded) until `count` calls of `method` arrived."""
        deadline = time.monotonic() + timeout
        while len(self.sent(method)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} {method} calls, got {len(self.sent(method))}")
            await asyncio.sleep(0.005)
        return self.sent(method)

    # --- updates for getUpdates ------------------------------------------------------------------
    def next_update_id(self) -> int:
        return next(self._update_ids)

    def push_update(self, update: dict[str, Any]) -> None:
        self._updates.append(update)
        assert self._new_updates is not None
        self._new_updates.set()

    # --- answers ---------------------------------------------------------------------------------
    def answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        hook = self.fail.get(method)
        if hook is not None:
            forced = hook(params)
            if forced is not None:
                return forced
        if method == "sendMessage" and self.rate_limit_per_second:
            now = time.monotonic()
            self._window = [t for t in self._window if now - t < 1.0]
            if len(self._window) >= self.rate_limit_per_second:
                return 429, {
                    "ok": False,
                    "error_code": 429,
                    "description": "Too Many Requests: retry after 1",
                    "parameters": {"retry_after": 1},
                }
            self._window.append(now)
        return 200, {"ok": True, "result": self._result(method, params)}

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "VIP Bot",
                "username": BOT_USERNAME,
                "can_join_groups": True,
                "can_read_all_group_messages": False,
                "supports_inline_queries": False,
            }
        if method in ("sendMessage", "sendPhoto", "sendDocument", "editMessageText"):
            chat_id = int(params.get("chat_id", 0))
            message = {
                "message_id": next(self._message_ids),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "VIP Bot", "username": BOT_USERNAME},
                "text": params.get("text", ""),
            }
            if "message_thread_id" in params:
                message["message_thread_id"] = int(params["message_thread_id"])
                message["is_topic_message"] = True
            return message
        if method == "getChatAdministrators":
            chat_id = int(params["chat_id"])
            return [
                {
                    "status": "administrator",
                    "user": {"id": uid, "is_bot": False, "first_name": f"admin{uid}"},
                    "can_be_edited": False,
                    "is_anonymous": False,
                    "can_manage_chat": True,
                    "can_delete_messages": True,
                    "can_manage_video_chats": True,
                    "can_restrict_members": True,
                    "can_promote_members": False,
                    "can_change_info": True,
                    "can_invite_users": True,
                    "can_post_stories": False,
                    "can_edit_stories": False,
                    "can_delete_stories": False,
                }
                for uid in self.admins.get(chat_id, [])
            ]
        return True

    async def take_updates(self, offset: int, timeout: float) -> list[dict[str, Any]]:
        assert self._new_updates is not None
        deadline = time.monotonic() + min(timeout, 0.3)
        while True:
            pending = [u for u in self._updates if u["update_id"] >= offset]
            self._updates = pending
            if pending or time.monotonic() >= deadline:
                return pending[:100]
            self._new_updates.clear()
            try:
                await asyncio.wait_for(self._new_updates.wait(), max(deadline - time.monotonic(), 0.001))
            except TimeoutError:
                pass


class _MethodHandler(RequestHandler):
    def initialize(self, api: FakeBotApi) -> None:
        self.api = api

    def check_xsrf_cookie(self) -> None:  # the Bot API has no cookies
        return None

    def _params(self) -> dict[str, Any]:
        content_type = self.request.headers.get("Content-Type", "")
        body = self.request.body
        if content_type.startswith("application/json"):
            return json.loads(body or b"{}")
        if content_type.startswith("multipart/form-data"):
            args: dict[str, list[bytes]] = {}
            files: dict[str, Any] = {}
            parse_body_arguments(content_type, body, args, files)
            params: dict[str, Any] = {k: _decode(v[0].decode()) for k, v in args.items()}
            for name, parts in files.items():
                params[name] = {"filename": parts[0].filename, "size": len(parts[0].body), "body": parts[0].body}
            return params
        return {k: _decode(v) for k, v in parse_qsl(body.decode(), keep_blank_values=True)}

    async def post(self, token: str, method: str) -> None:
        if token != self.api.token:
            self.set_status(401)
            self.finish({"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        params = self._params()
        call = Call(method, params, time.monotonic())
        self.api.calls.append(call)
        if method == "getUpdates":
            updates = await self.api.take_updates(int(params.get("offset", 0) or 0), float(params.get("timeout", 0)))
            self.finish({"ok": True, "result": updates})
            return
        status, body = self.api.answer(method, params)
        call.status = status
        self.set_status(status)
        self.finish(body)


# --- building updates -------------------------------------------------------------------------------
def user(uid: int, first_name: str = "", username: str | None = None, is_bot: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {"id": uid, "is_bot": is_bot, "first_name": first_name or f"user{uid}"}
    if username:
        data["username"] = username
    return data


def message_update(
    api: FakeBotApi,
    chat_id: int,
    sender: dict[str, Any] | None,
    text: str,
    *,
    chat_type: str | None = None,
    thread_id: int | None = None,
    reply_to: dict[str, Any] | None = None,
    sender_chat: dict[str, Any] | None = None,
    update_id: int | None = None,
    entities: bool = True,
) -> dict[str, Any]:
    """A Bot API update carrying one message, as Telegram would send it."""
    message: dict[str, Any] = {
        "message_id": next(api._message_ids),
        "date": int(time.time()),
        "chat": {"id": chat_id, "type": chat_type or ("private" if chat_id > 0 else "supergroup"), "title": "VIP"},
        "text": text,
    }
    if chat_id > 0:
        message["chat"] = {"id": chat_id, "type": "private", "first_name": (sender or {}).get("first_name", "")}
    if sender is not None:
        message["from"] = sender
    if sender_chat is not None:
        message["sender_chat"] = sender_chat
    if thread_id is not None:
        message["message_thread_id"] = thread_id
        message["is_topic_message"] = True
    if reply_to is not None:
        message["reply_to_message"] = {
            "message_id": next(api._message_ids),
            "date": int(time.time()),
            "chat": message["chat"],
            "from": reply_to,
            "text": "hello",
        }
    if entities and text.startswith("/"):
        command = text.split()[0]
        message["entities"] = [{"type": "bot_command", "offset": 0, "length": len(command.encode("utf-16-le")) // 2}]
    return {"update_id": update_id if update_id is not None else api.next_update_id(), "message": message}


def callback_update(
    api: FakeBotApi, chat_id: int, sender: dict[str, Any], data: str, *, update_id: int | None = None
) -> dict[str, Any]:
    """A button press (callback query) under a message the bot posted in `chat_id`."""
    return {
        "update_id": update_id if update_id is not None else api.next_update_id(),
        "callback_query": {
            "id": f"cb{next(api._message_ids)}",
            "from": sender,
            "chat_instance": "ci-1",
            "data": data,
            "message": {
                "message_id": next(api._message_ids),
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "title": "VIP"},
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "VIP Bot", "username": BOT_USERNAME},
                "text": "📣 promo",
            },
        },
    }
