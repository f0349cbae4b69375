"""A fake Telegram Bot API server on 127.0.0.1 for end-to-end tests and benchmarks.

It answers ``POST /bot<token>/<method>`` like Telegram (``{"ok": true, "result": ...}``), records every
call and serves queued updates to ``getUpdates``.

Like the real server it enforces Telegram's flood limits on *messages* (see ``MESSAGE_METHODS``: sends, edits
and pins; ``answerCallbackQuery``, ``getUpdates``, ``getMe``... are not messages), each a sliding window
measured at arrival with ``FakeBotApi.now``:

* at most ``per_second`` (30) messages in any 1 s overall;
* at most ``group_per_minute`` (20) messages, edits included, in any 60 s into one group (negative chat id);
* at most one message per ``1 / private_per_second`` (1) s into one private chat (positive chat id).

A message over a limit is answered HTTP 429 ``Too Many Requests: retry after N`` with
``parameters.retry_after = N``, N the whole seconds until that window has room again (at least 1); a refused
call is recorded (``Call.status``, ``flood_refusals()``) but not counted in the windows. ``limits=False``
switches the limits off.

Files users sent (`add_file`, `document_update`) are served as Telegram serves them: ``getFile`` gives a
``file_path`` for a file of at most 20 MB (``Bad Request: file is too big`` otherwise), and ``GET
/file/bot<token>/<file_path>`` gives its bytes.

What `vipbot doctor` asks is answered from state a test sets, as Telegram answers it:

* a token of the wrong shape gets HTTP 404 ``Not Found``, a well-formed wrong one 401 ``Unauthorized``;
* ``getMe`` says ``can_read_all_group_messages`` when ``privacy`` is off (BotFather's /setprivacy);
* ``setWebhook`` / ``deleteWebhook`` / ``getWebhookInfo`` keep one webhook (``webhook_url``; the secret is
  kept in ``webhook_secret`` but never shown back, as on Telegram); ``webhook_error`` is the last delivery
  error it reports; ``getUpdates`` while a webhook is set gets 409 ``Conflict``, and so does every
  ``getUpdates`` while ``rival_poller`` is set (another process polling the same token);
* ``getChat`` / ``getChatMember`` know the chats in ``chats`` (`add_group`, `add_user`: a user who started
  the bot), the bot's and members' standing in ``members`` and ``admins``; any other chat is 400 ``Bad
  Request: chat not found``, a group the bot left or was removed from 403 ``Forbidden: ...``, and a basic
  group upgraded to a supergroup (``migrated``) 400 with ``parameters.migrate_to_chat_id``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import socket
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tornado.httpserver import HTTPServer
from tornado.httputil import parse_body_arguments
from tornado.web import Application, RequestHandler

from tests.fakes.serving import close, serve

BOT_ID = 7000001
BOT_USERNAME = "vip_test_bot"

DOWNLOAD_LIMIT = 20 * 1024 * 1024
"""The Bot API gives bots files of at most 20 MB."""
EDIT_METHODS = frozenset({"editMessageText", "editMessageReplyMarkup", "editMessageCaption"})
MESSAGE_METHODS = frozenset(
    {"sendMessage", "sendPhoto", "sendDocument", "sendPoll", "sendMediaGroup", "pinChatMessage", *EDIT_METHODS}
)
"""Calls that post or change a message, and so count against the flood limits (a pin posts a service message)."""
OVERALL_WINDOW = 1.0
GROUP_WINDOW = 60.0
NOT_MODIFIED = (
    "Bad Request: message is not modified: specified new message content and reply markup of the message are"
    " exactly the same as a current content and reply markup of the message"
)

TOKEN_SHAPE = re.compile(r"\d+:[A-Za-z0-9_-]+")
"""What a bot token looks like; the Bot API answers 404 to anything else, 401 to a well-formed wrong token."""
WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})
"""The only ports setWebhook accepts."""
MEMBER_STATUSES = frozenset({"member", "restricted", "left", "kicked"})

ChatKey = int | str
"""A chat as the calls name it: its id, or an ``@username`` (treated as a group)."""


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


def _chat_key(value: Any) -> ChatKey | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return str(value)


def _is_private(chat: ChatKey | None) -> bool:
    return isinstance(chat, int) and chat > 0


def _chat_json(chat: ChatKey | None) -> dict[str, Any]:
    if isinstance(chat, int):
        return {"id": chat, "type": "private" if chat > 0 else "supergroup"}
    name = str(chat or "")
    chat_id = -(10**12) - zlib.crc32(name.encode())  # a stable id for an @username
    return {"id": chat_id, "type": "supergroup", **({"username": name.lstrip("@")} if name else {})}


def _refusal(code: int, description: str) -> tuple[int, dict[str, Any]]:
    """An error answer of the Bot API: the HTTP status and ``{"ok": false, "error_code", "description"}``."""
    return code, {"ok": False, "error_code": code, "description": description}


def _chat_type(chat: int, fields: dict[str, Any]) -> str:
    """private for a user, supergroup for a -100... id, group for another negative id (unless `fields` says)."""
    if "type" in fields:
        return str(fields["type"])
    if chat > 0:
        return "private"
    return "supergroup" if str(chat).startswith("-100") and chat <= -(10**12) else "group"


def _weight(method: str, params: dict[str, Any]) -> int:
    """How many messages a call posts: an album posts one per item."""
    media = params.get("media") if method == "sendMediaGroup" else None
    return len(media) if isinstance(media, list) and media else 1


def _markup(params: dict[str, Any]) -> Any:
    """The inline keyboard a call leaves on its message (None: no keyboard, as when an edit omits it)."""
    markup = params.get("reply_markup")
    if isinstance(markup, str):
        try:
            markup = json.loads(markup)
        except ValueError:
            return markup
    if isinstance(markup, dict) and not markup.get("inline_keyboard"):
        return None  # reply keyboards are not part of a message; an empty inline keyboard is none
    return markup


def _caption(params: dict[str, Any]) -> str | None:
    caption = params.get("caption")
    return None if caption is None else str(caption)


def _wait(times: deque[float], now: float, window: float, limit: float, weight: int) -> float:
    """Seconds until `weight` more messages fit in a sliding `window` holding at most `limit` (0: they fit now).

    Drops from `times` (ascending arrival times of counted messages) those that left the window."""
    while times and now - times[0] >= window:
        times.popleft()
    cap = max(1, int(limit))
    need = min(weight, cap)
    if len(times) + need <= cap:
        return 0.0
    expiring = times[len(times) + need - cap - 1]  # the oldest message that must leave before they fit
    return max(expiring + window - now, 0.0)


@dataclass
class FakeBotApi:
    token: str = "123456:TEST-TOKEN"
    admins: dict[int, list[int]] = field(default_factory=dict)
    """chat id -> user ids returned by getChatAdministrators."""
    calls: list[Call] = field(default_factory=list)
    rate_limit_per_second: float | None = None
    """Old name of the overall limit: when set it replaces `per_second`, and applies even with `limits=False`."""
    fail: dict[str, Callable[[dict[str, Any]], tuple[int, dict[str, Any]] | None]] = field(default_factory=dict)
    """method -> hook returning (status, body) to answer instead, or None to answer normally."""
    commands: dict[tuple[str, str], list[dict[str, str]]] = field(default_factory=dict)
    """(scope as sorted JSON, language_code) -> the command menu setMyCommands set there."""
    port: int = 0
    limits: bool = True
    """Enforce Telegram's flood limits on messages (HTTP 429 with retry_after); False switches them off."""
    per_second: int = 30
    """At most this many messages in any 1 s, over all chats."""
    group_per_minute: int = 20
    """At most this many messages (sends and edits) in any 60 s into one group."""
    private_per_second: float = 1.0
    """At most one message per 1 / this many seconds into one private chat."""
    now: Callable[[], float] = time.monotonic
    """The clock of the limits and of `Call.at`; tests inject their own to move time without sleeping."""
    served_ids: set[int] = field(default_factory=set)
    """Every update_id getUpdates ever returned."""
    confirmed_ids: set[int] = field(default_factory=set)
    """Update ids dropped from the queue because a later getUpdates offset confirmed them."""
    _updates: list[dict[str, Any]] = field(default_factory=list)
    _update_ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _message_ids: itertools.count = field(default_factory=lambda: itertools.count(1000))
    _new_updates: asyncio.Event | None = None
    _server: HTTPServer | None = None
    _overall: deque[float] = field(default_factory=deque)
    _per_chat: dict[ChatKey, deque[float]] = field(default_factory=dict)
    _messages: dict[ChatKey | None, dict[int, dict[str, Any]]] = field(default_factory=dict)
    """chat -> message id -> what the bot last put there (text, caption, reply_markup, date...)."""
    files: dict[str, bytes] = field(default_factory=dict)
    """file_id -> the bytes of a file a user sent."""
    downloads: list[str] = field(default_factory=list)
    """The file paths the bot downloaded, in order."""
    privacy: bool = True
    """The bot's privacy mode (on by default, BotFather /setprivacy): getMe's can_read_all_group_messages is
    its opposite."""
    chats: dict[int, dict[str, Any]] = field(default_factory=dict)
    """Chats getChat finds: chat id -> its fields (title, first_name, username...); see `add_group`, `add_user`."""
    members: dict[int, dict[int, str]] = field(default_factory=dict)
    """chat id -> user id -> member, restricted (may not send), left or kicked; admins are in `admins`."""
    migrated: dict[int, int] = field(default_factory=dict)
    """Basic groups upgraded to supergroups: old chat id -> new one."""
    webhook_url: str = ""
    webhook_secret: str = ""
    """The secret_token setWebhook registered (Telegram never shows it back)."""
    webhook_allowed_updates: list[str] | None = None
    webhook_error: tuple[int, str] | None = None
    """(unix time, message) of the last failed delivery to the webhook, as getWebhookInfo reports it."""
    rival_poller: bool = False
    """Another process polls getUpdates with this token: while True every getUpdates gets Telegram's 409
    ``Conflict: terminated by other getUpdates request``, as each of the rival's calls cuts this one's short."""

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    async def start(self) -> FakeBotApi:
        self._new_updates = asyncio.Event()
        app = Application([
            (r"/bot([^/]+)/(\w+)", _MethodHandler, {"api": self}),
            (r"/file/bot([^/]+)/(.+)", _FileHandler, {"api": self}),
        ])  # fmt: skip
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(1024)
        self._server, self.port = serve(app, sock)
        return self

    async def stop(self) -> None:
        await close(self._server)

    # --- what tests look at ----------------------------------------------------------------------
    def sent(self, method: str = "sendMessage") -> list[dict[str, Any]]:
        """Parameters of the successful calls of `method`, in order."""
        return [c.params for c in self.calls if c.method == method and c.status == 200]

    def refused(self, method: str = "sendMessage", status: int = 429) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method and c.status == status]

    def texts(self, chat_id: int | None = None) -> list[str]:
        return [p["text"] for p in self.sent() if chat_id is None or int(p["chat_id"]) == chat_id]

    def clear(self) -> None:
        """Forget the recorded calls (the flood windows and the messages' contents stay, as on the real server)."""
        self.calls.clear()

    def reset_limits(self) -> None:
        """Empty the flood windows, as if the last message had been sent long ago."""
        self._overall.clear()
        self._per_chat.clear()

    def flood_refusals(self) -> list[Call]:
        """Every call answered 429, of any method."""
        return [c for c in self.calls if c.status == 429]

    def group_load(self, chat_id: ChatKey) -> int:
        """The most messages (sends and edits) that went into `chat_id` in any 60 s so far."""
        key = _chat_key(chat_id)
        return 0 if key is None else self._loads().get(key, 0)

    def max_per_minute(self) -> dict[int, int]:
        """chat id -> the most messages that went into it in any 60 s so far."""
        return {chat: n for chat, n in self._loads().items() if isinstance(chat, int)}

    def messages(self, chat_id: ChatKey) -> dict[int, str]:
        """message id -> the text (or caption) the bot last gave that message in `chat_id`."""
        stored = self._messages.get(_chat_key(chat_id), {})
        return {mid: str(m.get("text") or m.get("caption") or "") for mid, m in stored.items()}

    def _loads(self) -> dict[ChatKey, int]:
        arrivals: dict[ChatKey, list[tuple[float, int]]] = {}
        for c in self.calls:
            chat = _chat_key(c.params.get("chat_id"))
            if c.method in MESSAGE_METHODS and c.status == 200 and chat is not None:
                arrivals.setdefault(chat, []).append((c.at, _weight(c.method, c.params)))
        loads: dict[ChatKey, int] = {}
        for chat, seen in arrivals.items():
            seen.sort()
            best = total = start = 0
            for at, weight in seen:  # the window ending at each arrival: (at - 60 s, at]
                total += weight
                while at - seen[start][0] >= GROUP_WINDOW:
                    total -= seen[start][1]
                    start += 1
                best = max(best, total)
            loads[chat] = best
        return loads

    async def wait_for(self, count: int, method: str = "sendMessage", timeout: float = 10.0) -> list[dict[str, Any]]:
        """Wait (on the event loop, bounded) until `count` calls of `method` arrived."""
        deadline = time.monotonic() + timeout
        while len(self.sent(method)) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} {method} calls, got {len(self.sent(method))}")
            await asyncio.sleep(0.005)
        return self.sent(method)

    # --- updates for getUpdates ------------------------------------------------------------------
    def add_file(self, content: bytes) -> str:
        """A file a user sent; its file_id."""
        file_id = f"file{next(self._message_ids)}"
        self.files[file_id] = content
        return file_id

    # --- chats for getChat / getChatMember -----------------------------------------------------------
    def add_group(self, chat_id: int, title: str = "VIP", *, bot: str = "member") -> None:
        """A group the bot is in, as `bot`: member, administrator, restricted (may not send), left or kicked."""
        self.chats[chat_id] = {"title": title}
        if bot == "administrator":
            self.admins.setdefault(chat_id, []).append(BOT_ID)
        else:
            assert bot in MEMBER_STATUSES, bot
            self.members.setdefault(chat_id, {})[BOT_ID] = bot

    def add_user(self, user_id: int, first_name: str = "", username: str | None = None) -> None:
        """A user who started the bot: getChat finds their private chat."""
        self.chats[user_id] = {"first_name": first_name or f"user{user_id}"}
        if username:
            self.chats[user_id]["username"] = username

    def next_update_id(self) -> int:
        return next(self._update_ids)

    def push_update(self, update: dict[str, Any]) -> None:
        self._updates.append(update)
        assert self._new_updates is not None
        self._new_updates.set()

    # --- answers ---------------------------------------------------------------------------------
    def answer(self, method: str, params: dict[str, Any], at: float | None = None) -> tuple[int, dict[str, Any]]:
        """(status, body) for a call of `method` that arrived at `at` (default: now)."""
        hook = self.fail.get(method)
        if hook is not None:
            forced = hook(params)
            if forced is not None:
                return forced
        chat = _chat_key(params.get("chat_id"))
        if isinstance(chat, int) and chat in self.migrated:
            refused = _refusal(400, "Bad Request: group chat was upgraded to a supergroup chat")
            refused[1]["parameters"] = {"migrate_to_chat_id": self.migrated[chat]}
            return refused
        if method in ("getChat", "getChatMember"):
            return self._chat_answer(method, params)
        if method in ("setWebhook", "deleteWebhook", "getWebhookInfo"):
            return self._webhook_answer(method, params)
        if method in ("setMyCommands", "getMyCommands", "deleteMyCommands"):
            return self._commands(method, params)
        if method == "getFile":
            content = self.files.get(str(params.get("file_id")))
            if content is None:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: invalid file_id"}
            if len(content) > DOWNLOAD_LIMIT:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: file is too big"}
            file_id = str(params["file_id"])
            result = {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_size": len(content),
                      "file_path": f"documents/{file_id}"}  # fmt: skip
            return 200, {"ok": True, "result": result}
        if method == "deleteMessage":  # the bot's own message; Telegram's 48-hour limit is the caller's to keep
            messages = self._messages.get(_chat_key(params.get("chat_id")), {})
            if messages.pop(int(params.get("message_id") or 0), None) is None:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message to delete not found"}
            return 200, {"ok": True, "result": True}
        if method in EDIT_METHODS and self._unchanged(method, params):
            return 400, {"ok": False, "error_code": 400, "description": NOT_MODIFIED}
        if method in MESSAGE_METHODS:
            arrived = self.now() if at is None else at
            retry_after = self._flood_wait(method, params, arrived)
            if retry_after:
                return 429, {
                    "ok": False,
                    "error_code": 429,
                    "description": f"Too Many Requests: retry after {retry_after}",
                    "parameters": {"retry_after": retry_after},
                }
        return 200, {"ok": True, "result": self._result(method, params)}

    def _chat_answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """getChat and getChatMember, from `chats`, `members` and `admins`."""
        chat = _chat_key(params.get("chat_id"))
        if not isinstance(chat, int) or chat not in self.chats:
            return _refusal(400, "Bad Request: chat not found")
        kind = _chat_type(chat, self.chats[chat])
        if kind != "private":
            standing = self.members.get(chat, {}).get(BOT_ID)
            where = "supergroup" if kind == "supergroup" else "group"
            if standing == "kicked":
                return _refusal(403, f"Forbidden: bot was kicked from the {where} chat")
            if standing == "left":
                return _refusal(403, f"Forbidden: bot is not a member of the {where} chat")
        if method == "getChat":
            return 200, {"ok": True, "result": self._chat_info(chat, kind)}
        try:
            uid = int(params.get("user_id"))
        except (TypeError, ValueError):
            return _refusal(400, "Bad Request: invalid user_id specified")
        if kind == "private":
            if uid != chat:
                return _refusal(400, "Bad Request: user not found")
            return 200, {"ok": True, "result": {"status": "member", "user": self._user_json(uid)}}
        if uid in self.admins.get(chat, []):
            return 200, {"ok": True, "result": self._admin_json(uid)}
        status = self.members.get(chat, {}).get(uid)
        if status is None:
            if uid != BOT_ID and uid not in self.chats and not any(uid in m for m in self.members.values()):
                return _refusal(400, "Bad Request: user not found")
            status = "left"
        member: dict[str, Any] = {"status": status, "user": self._user_json(uid)}
        if status == "kicked":
            member["until_date"] = 0
        if status == "restricted":
            rights = ("can_change_info", "can_invite_users", "can_pin_messages", "can_send_messages", "can_send_polls",
                      "can_send_other_messages", "can_add_web_page_previews", "can_manage_topics", "can_send_audios",
                      "can_send_documents", "can_send_photos", "can_send_videos", "can_send_video_notes",
                      "can_send_voice_notes", "can_edit_tag", "can_react_to_messages")  # fmt: skip
            member |= {"is_member": True, "until_date": 0, **dict.fromkeys(rights, False)}
        return 200, {"ok": True, "result": member}

    def _chat_info(self, chat: int, kind: str) -> dict[str, Any]:
        """A ChatFullInfo as getChat gives it (Bot API 10)."""
        fields = {k: v for k, v in self.chats[chat].items() if k != "type"}
        gifts = {"unlimited_gifts": False, "limited_gifts": False, "unique_gifts": False,
                 "premium_subscription": False, "gifts_from_channels": False}  # fmt: skip
        info = {"id": chat, "type": kind, **fields, "accent_color_id": chat % 7, "max_reaction_count": 11,
                "accepted_gift_types": gifts}  # fmt: skip
        if kind != "private":
            info["permissions"] = {"can_send_messages": True, "can_send_polls": True, "can_invite_users": True}
        return info

    def _user_json(self, uid: int) -> dict[str, Any]:
        if uid == BOT_ID:
            return {"id": BOT_ID, "is_bot": True, "first_name": "VIP Bot", "username": BOT_USERNAME}
        known = self.chats.get(uid, {})
        return {"id": uid, "is_bot": False, "first_name": known.get("first_name", f"user{uid}"),
                **({"username": known["username"]} if known.get("username") else {})}  # fmt: skip

    def _admin_json(self, uid: int) -> dict[str, Any]:
        who = self._user_json(uid) if uid == BOT_ID else {"id": uid, "is_bot": False, "first_name": f"admin{uid}"}
        return {
            "status": "administrator",
            "user": who,
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

    def _webhook_answer(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "getWebhookInfo":
            info: dict[str, Any] = {"url": self.webhook_url, "has_custom_certificate": False,
                                    "pending_update_count": len(self._updates)}  # fmt: skip
            if self.webhook_url:
                info["max_connections"] = 40
                if self.webhook_allowed_updates is not None:
                    info["allowed_updates"] = self.webhook_allowed_updates
                if self.webhook_error is not None:
                    info["last_error_date"], info["last_error_message"] = self.webhook_error
            return 200, {"ok": True, "result": info}
        url = str(params.get("url") or "") if method == "setWebhook" else ""
        if url:
            parts = urlsplit(url)
            if parts.scheme != "https":
                return _refusal(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
            if (parts.port or 443) not in WEBHOOK_PORTS:
                ports = "80, 88, 443 or 8443"
                return _refusal(400, f"Bad Request: bad webhook: Webhook can be set up only on ports {ports}")
        if params.get("drop_pending_updates") in (True, "true", "True", 1):
            self._updates.clear()
        was = self.webhook_url
        self.webhook_url, self.webhook_secret, self.webhook_error = url, str(params.get("secret_token") or ""), None
        allowed = params.get("allowed_updates")
        self.webhook_allowed_updates = list(allowed) if url and isinstance(allowed, list) else None
        if url:
            described = "Webhook was set" if was != url else "Webhook is already set"
        else:
            described = "Webhook was deleted" if was else "Webhook is already deleted"
        return 200, {"ok": True, "result": True, "description": described}

    def _flood_wait(self, method: str, params: dict[str, Any], now: float) -> int:
        """Whole seconds to wait before this message fits every window (0: it fits, and is counted)."""
        chat = _chat_key(params.get("chat_id"))
        weight = _weight(method, params)
        per_chat = self._per_chat.setdefault(chat, deque()) if chat is not None else None
        overall_limit = self.rate_limit_per_second or (self.per_second if self.limits else None)
        if _is_private(chat):
            chat_window = 1.0 / self.private_per_second if self.private_per_second else 0.0
            chat_limit: float | None = 1 if self.limits and self.private_per_second else None
        else:
            chat_window, chat_limit = GROUP_WINDOW, (self.group_per_minute if self.limits else None)
        waits = [0.0]
        if overall_limit:
            waits.append(_wait(self._overall, now, OVERALL_WINDOW, overall_limit, weight))
        if per_chat is not None and chat_limit:
            waits.append(_wait(per_chat, now, chat_window, chat_limit, weight))
        wait = max(waits)
        if wait > 0:
            return max(1, math.ceil(wait - 1e-9))
        self._overall.extend([now] * weight)
        if per_chat is not None:
            per_chat.extend([now] * weight)
        self._trim(per_chat, now, chat_window)
        return 0

    def _trim(self, per_chat: deque[float] | None, now: float, chat_window: float) -> None:
        """Forget arrivals that left every window, so that long runs with the limits off stay small."""
        while self._overall and now - self._overall[0] >= OVERALL_WINDOW:
            self._overall.popleft()
        while per_chat and now - per_chat[0] >= chat_window:
            per_chat.popleft()

    # --- messages, as the bot left them --------------------------------------------------------------
    def _stored(self, params: dict[str, Any]) -> dict[str, Any] | None:
        if params.get("inline_message_id") or params.get("message_id") in (None, ""):
            return None
        return self._messages.get(_chat_key(params.get("chat_id")), {}).get(int(params["message_id"]))

    def _unchanged(self, method: str, params: dict[str, Any]) -> bool:
        """Whether an edit would leave a message the bot sent exactly as it is (Telegram refuses it with 400)."""
        stored = self._stored(params)
        if stored is None or _markup(params) != stored.get("reply_markup"):
            return False
        if method == "editMessageText":
            return str(params.get("text", "")) == stored.get("text")
        if method == "editMessageCaption":
            return str(params.get("caption") or "") == (stored.get("caption") or "")
        return True  # editMessageReplyMarkup with the same keyboard

    def _post(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        """A new message from the bot, remembered so that edits can be checked against it."""
        chat = _chat_key(params.get("chat_id"))
        stored: dict[str, Any] = {"date": int(time.time()), "reply_markup": _markup(params), **content}
        if "message_thread_id" in params:
            stored["message_thread_id"] = int(params["message_thread_id"])
        message_id = next(self._message_ids)
        self._messages.setdefault(chat, {})[message_id] = stored
        return self._message_json(chat, message_id, stored)

    def _edit(self, method: str, params: dict[str, Any]) -> Any:
        if params.get("inline_message_id"):
            return True  # Telegram answers True for inline messages
        chat = _chat_key(params.get("chat_id"))
        message_id = int(params["message_id"])
        stored = self._messages.setdefault(chat, {}).setdefault(message_id, {"date": int(time.time())})
        if method == "editMessageText":
            stored["text"] = str(params.get("text", ""))
        elif method == "editMessageCaption":
            stored["caption"] = str(params.get("caption") or "")
        stored["reply_markup"] = _markup(params)
        stored["edit_date"] = int(time.time())
        return self._message_json(chat, message_id, stored)

    def _message_json(self, chat: ChatKey | None, message_id: int, stored: dict[str, Any]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "message_id": message_id,
            "date": stored["date"],
            "chat": _chat_json(chat),
            "from": {"id": BOT_ID, "is_bot": True, "first_name": "VIP Bot", "username": BOT_USERNAME},
        }
        for key in ("text", "caption", "edit_date", "photo", "document", "poll", "media_group_id"):
            if stored.get(key) is not None:
                message[key] = stored[key]
        if not any(k in message for k in ("text", "caption", "photo", "document", "poll")):
            message["text"] = ""
        if stored.get("message_thread_id") is not None:
            message["message_thread_id"] = stored["message_thread_id"]
            message["is_topic_message"] = True
        if stored.get("reply_markup") is not None:
            message["reply_markup"] = stored["reply_markup"]
        return message

    def _media(self, kind: str, params: dict[str, Any]) -> Any:
        file_id = f"{kind}-{next(self._message_ids)}"
        if kind == "photo":
            return [{"file_id": file_id, "file_unique_id": file_id, "width": 800, "height": 600}]
        name = params.get(kind)
        filename = name.get("filename") if isinstance(name, dict) else None
        return {"file_id": file_id, "file_unique_id": file_id, **({"file_name": filename} if filename else {})}

    def _poll(self, params: dict[str, Any]) -> dict[str, Any]:
        options = params.get("options") or []
        if isinstance(options, str):
            options = _decode(options)
        poll_id = f"poll{next(self._message_ids)}"
        texts = [str(o.get("text", "") if isinstance(o, dict) else o) for o in options]
        return {
            "id": poll_id,
            "question": str(params.get("question", "")),
            "options": [
                {"text": text, "voter_count": 0, "persistent_id": f"{poll_id}-{n}"} for n, text in enumerate(texts)
            ],
            "total_voter_count": 0,
            "is_closed": False,
            "is_anonymous": params.get("is_anonymous", True) not in (False, "false", 0),
            "type": str(params.get("type", "regular")),
            "allows_multiple_answers": params.get("allows_multiple_answers") in (True, "true", 1),
            "allows_revoting": params.get("allows_revoting") in (True, "true", 1),
            "members_only": params.get("members_only") in (True, "true", 1),
        }

    def _result(self, method: str, params: dict[str, Any]) -> Any:
        if method == "getMe":
            return {
                "id": BOT_ID,
                "is_bot": True,
                "first_name": "VIP Bot",
                "username": BOT_USERNAME,
                "can_join_groups": True,
                "can_read_all_group_messages": not self.privacy,
                "supports_inline_queries": False,
            }
        if method == "sendMessage":
            return self._post(params, text=str(params.get("text", "")))
        if method in ("sendPhoto", "sendDocument"):
            kind = "photo" if method == "sendPhoto" else "document"
            return self._post(params, caption=_caption(params), **{kind: self._media(kind, params)})
        if method == "sendPoll":
            return self._post(params, poll=self._poll(params))
        if method == "sendMediaGroup":
            media = params.get("media")
            group_id = str(next(self._message_ids))
            album = []
            for item in media if isinstance(media, list) and media else [{}]:
                kind = "photo" if item.get("type", "photo") == "photo" else "document"
                media_item = {kind: self._media(kind, {})}
                album.append(self._post(params, caption=_caption(item), media_group_id=group_id, **media_item))
            return album
        if method in EDIT_METHODS:
            return self._edit(method, params)
        if method == "getChatAdministrators":
            return [self._admin_json(uid) for uid in self.admins.get(int(params["chat_id"]), [])]
        return True

    def _commands(self, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The command menus, one list per (scope, language_code), checked as Telegram checks them."""
        scope = params.get("scope")
        scope = _decode(scope) if isinstance(scope, str) else scope or {"type": "default"}
        key = (json.dumps(scope, sort_keys=True), str(params.get("language_code") or ""))
        if method == "getMyCommands":
            return 200, {"ok": True, "result": self.commands.get(key, [])}
        if method == "deleteMyCommands":
            self.commands.pop(key, None)
            return 200, {"ok": True, "result": True}
        commands = params.get("commands")
        commands = _decode(commands) if isinstance(commands, str) else commands or []
        if len(commands) > 100:
            return _refusal(400, "Bad Request: BOT_COMMANDS_TOO_MUCH")
        for c in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(c.get("command", ""))):
                return _refusal(400, "Bad Request: BOT_COMMAND_INVALID")
            if not 1 <= len(str(c.get("description", ""))) <= 256:
                return _refusal(400, "Bad Request: BOT_COMMAND_DESCRIPTION_INVALID")
        self.commands[key] = [{"command": c["command"], "description": c["description"]} for c in commands]
        return 200, {"ok": True, "result": True}

    async def take_updates(self, offset: int, timeout: float, limit: int = 100) -> list[dict[str, Any]]:
        """getUpdates: drop (confirm) the updates below `offset`, then answer the next ones, waiting a little."""
        assert self._new_updates is not None
        deadline = time.monotonic() + min(timeout, 0.3)
        while True:
            pending = []
            for update in self._updates:
                if update["update_id"] >= offset:
                    pending.append(update)
                else:
                    self.confirmed_ids.add(update["update_id"])
            self._updates = pending
            if pending or time.monotonic() >= deadline:
                served = pending[: max(1, min(limit, 100))]
                self.served_ids.update(u["update_id"] for u in served)
                return served
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
        if not TOKEN_SHAPE.fullmatch(token):
            self.set_status(404)
            self.finish({"ok": False, "error_code": 404, "description": "Not Found"})
            return
        if token != self.api.token:
            self.set_status(401)
            self.finish({"ok": False, "error_code": 401, "description": "Unauthorized"})
            return
        params = self._params()
        call = Call(method, params, self.api.now())
        self.api.calls.append(call)
        if method == "getUpdates" and self.api.webhook_url:
            call.status = 409
            self.set_status(409)
            self.finish({"ok": False, "error_code": 409, "description": "Conflict: can't use getUpdates method while"
                         " webhook is active; use deleteWebhook to delete the webhook first"})  # fmt: skip
            return
        if method == "getUpdates" and self.api.rival_poller:
            call.status = 409
            self.set_status(409)
            self.finish({"ok": False, "error_code": 409, "description": "Conflict: terminated by other getUpdates"
                         " request; make sure that only one bot instance is running"})  # fmt: skip
            return
        if method == "getUpdates":
            updates = await self.api.take_updates(
                int(params.get("offset", 0) or 0), float(params.get("timeout", 0) or 0), int(params.get("limit") or 100)
            )
            self.finish({"ok": True, "result": updates})
            return
        status, body = self.api.answer(method, params, call.at)
        call.status = status
        self.set_status(status)
        self.finish(body)


class _FileHandler(RequestHandler):
    def initialize(self, api: FakeBotApi) -> None:
        self.api = api

    def get(self, token: str, path: str) -> None:
        content = self.api.files.get(path.removeprefix("documents/"))
        if token != self.api.token or content is None or len(content) > DOWNLOAD_LIMIT:
            self.set_status(404)
            self.finish({"ok": False, "error_code": 404, "description": "Not Found"})
            return
        self.api.downloads.append(path)
        self.set_header("Content-Type", "application/octet-stream")
        self.finish(content)


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


def document_update(
    api: FakeBotApi, chat_id: int, sender: dict[str, Any], name: str, content: bytes, *, caption: str = "",
    size: int | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A message with a file (kept by the fake, for getFile); `size` overrides the size Telegram reports."""
    update = message_update(api, chat_id, sender, "")
    message = update["message"]
    del message["text"]
    if caption:
        message["caption"] = caption
    file_id = api.add_file(content)
    message["document"] = {"file_id": file_id, "file_unique_id": f"u{file_id}", "file_name": name,
                           "file_size": len(content) if size is None else size}  # fmt: skip
    return update


def contact_update(
    api: FakeBotApi, chat_id: int, sender: dict[str, Any], phone: str, user_id: int | None, *,
    forwarded: bool = False,
) -> dict[str, Any]:  # fmt: skip
    """A message sharing a contact: the sender's own (the contact-request key) when `user_id` is theirs."""
    update = message_update(api, chat_id, sender, "")
    message = update["message"]
    del message["text"]
    message["contact"] = {"phone_number": phone, "first_name": sender.get("first_name", "")}
    if user_id is not None:
        message["contact"]["user_id"] = user_id
    if forwarded:
        message["forward_origin"] = {"type": "user", "date": message["date"], "sender_user": sender}
    return update
