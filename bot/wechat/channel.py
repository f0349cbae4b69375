"""The WeChat Official Account adapter: signed (and, in safe mode, encrypted) XML in, neutral Inbound to the
dispatcher, and the answer back in the HTTP response when it is ready within the reply budget (4 s of
WeChat's 5); a later answer goes out through the customer-service API. A retried message (same sender and
MsgId, or sender + CreateTime for events) is handled once and gets the same answer, on whichever bot process
it lands (several may run behind one address on PostgreSQL):

- the answer is stored (`wechat_answers`) in the transaction that marks the message done in the inbox, so a
  message is either handled nowhere yet (the retry handles it: a process that died mid-way rolled back with
  nothing booked) or handled with its answer kept (the retry answers with it, choices and all). A retry that
  arrives while the first attempt's transaction runs waits for it at the inbox's row, within its own reply
  budget; past the budget it says `success`;
- only the attempt that handled the message sends its answer late, through the customer-service API, and only
  when no retry got it in its HTTP response (one conditional update each decides which); a retry never sends
  anything late.

A message is kept before it is handled: the binding of its nonce, the first write of every message, stores its
XML in the inbox in the same transaction (a retry's binding does not: the row is there). A worker that dies
after telling WeChat `success` (the answer comes late), before it committed the message's effects, leaves the
row pending, and the leader handles it a minute later (`resume_kept`) and sends its answer late, once. Only a
process so swamped that even the binding has not finished when the budget runs out says `success` before the
message is kept (counted in `not_kept_in_time`).

Within one process a retry waits on the first attempt in memory. When no other process shares the database
(`runtime.leader.shared` is false: SQLite, one process per file) the answers and the two claims stay in memory
only, which spares every message a write.

What a request must pass before it reaches the dispatcher (each refusal a 4xx, never a 5xx):
- a well-formed query (ASCII digits for the timestamp, a short nonce), the signature (403), a timestamp
  within `wechat.timestamp_tolerance_seconds` of the bot's clock (403);
- a body that decrypts (safe mode) and is WeChat XML with each field once and of its type (400);
- the query's `openid`, when given, is the body's sender (403);
- the (timestamp, nonce) pair is new, or was first seen with this very message: WeChat's retry of the same
  request (403 otherwise). In plain and compatible mode the signature does not cover the body, so this
  binding (kept in the database, shared by every process) is what stops a signed URL from carrying
  another body; safe mode signs the body itself. (Only a storage fault while recording the pair is a 503,
  which WeChat retries.)
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import xmltodict
from wechatpy.crypto import WeChatCrypto
from wechatpy.exceptions import InvalidAppIdException, InvalidSignatureException
from wechatpy.replies import TextReply

from bot.app.config import Settings
from bot.app.runtime import Runtime
from bot.app.web import LimitedHandler, WebServer
from bot.wechat.client import ShopWeChatClient
from bot.wechat.push import CHANNEL, WeChatPusher, with_choices
from bot.wechat.tokens import REFRESH_EVERY_SECONDS, SharedSession, TokenKeeper
from handlers.core.dispatch import Dispatcher
from handlers.core.messages import Button, Identity, Inbound, Reply
from handlers.core.roles import Role
from storage.db.database import Database
from storage.repos import Repos

log = logging.getLogger(__name__)

CHOICES_VALID_SECONDS = 24 * 3600
ANSWERS_KEPT = 10_000
"""Answers remembered in memory for WeChat's retries to this process (it retries within seconds; this is plenty)."""
STORED_ANSWERS_SECONDS = 600
"""How long the database keeps an answer for retries on any process (WeChat retries within about 15 s)."""
PRUNE_ANSWERS_EVERY_SECONDS = 60
UNDELIVERED_AFTER_SECONDS = 30
"""An answer neither given in an HTTP response nor sent late this long after it was stored has nobody left to send
it (WeChat's three tries span about 15 s): the leader sends it (`deliver_undelivered`)."""
UNDELIVERED_EVERY_SECONDS = 10
RESUME_AFTER_SECONDS = 60
"""A kept message still not handled this long after it arrived has nobody left to handle it (a swamped worker
works through its backlog within this): the leader does (`resume_kept`)."""
RESUME_BATCH = 200
"""Kept messages the leader's sweep handles at most per run (`resume_kept`)."""
ANSWERING_AT_ONCE = 32
LATE, PASSIVE = "late", "passive"
"""How a message's answer went out (when the database does not keep it): by customer service, or to a retry."""
NONCE_PRUNE_SECONDS = 60
"""How often (at most) a request also forgets (timestamp, nonce) pairs too old to be accepted again."""

_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")
"""OpenIDs and account ids (gh_…): URL-safe base64-like, 28 characters in practice."""
_NONCE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TIMESTAMP = re.compile(r"[0-9]{1,10}")
_MSG_ID = re.compile(r"[0-9]{1,20}")
_WORD = re.compile(r"[A-Za-z_]{1,64}")
_SIGNATURE = re.compile(r"[0-9a-f]{40}")


@dataclass(frozen=True, slots=True)
class Answer:
    """What a message is answered with: the text and its buttons (shown as numbered choices)."""

    text: str
    buttons: tuple[Button, ...] = ()
    key: str | None = None
    """The message's key when the answer is stored for retries (None: the channel's own answer, or an apology
    for a storage fault, neither stored)."""
    first: bool = True
    """This attempt handled the message (it sends the answer late when it misses the reply window); False for
    a retry, which never does."""

    @property
    def empty(self) -> bool:
        """Nothing to say: the HTTP answer is 'success'."""
        return not self.text and not self.buttons

    def encoded(self) -> str:
        return json.dumps({"text": self.text, "choices": [[b.label, b.data] for b in self.buttons]},
                          ensure_ascii=False)  # fmt: skip

    @classmethod
    def decoded(cls, stored: str, key: str, first: bool) -> Answer:
        data = json.loads(stored)
        buttons = tuple(Button(str(label), str(value)) for label, value in data.get("choices", []))
        return cls(str(data.get("text", "")), buttons, key, first)


class BadRequest(Exception):
    """A request that is not what WeChat sends; `status` is the 4xx to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WeChatMessage:
    """One message or event as WeChat posts it, every field checked for its type."""

    account: str
    """ToUserName: the Official Account's own id."""
    openid: str
    """FromUserName: the member."""
    created: int
    kind: str
    """MsgType, lower case: text, image, event, …"""
    msg_id: int | None
    """MsgId: every message has one, events have none."""
    content: str = ""
    event: str = ""
    """Event, lower case (subscribe, unsubscribe, click, …)."""
    event_key: str = ""

    @property
    def key(self) -> str:
        """What identifies the message across WeChat's retries: the sender and the message, never MsgId alone."""
        if self.msg_id is not None:
            return f"{CHANNEL}:msg:{self.openid}:{self.msg_id}"
        return f"{CHANNEL}:event:{self.openid}:{self.created}"


def resumable(message: WeChatMessage) -> bool:
    """Whether the dispatcher handles the message (so it is kept in the inbox until it has): every message but
    the events the channel settles itself (an unsubscribe is recorded at once, other events are ignored)."""
    return message.kind != "event" or message.event in ("subscribe", "click")


def _scalar(data: dict[str, Any], name: str, *, required: bool = False) -> str | None:
    value = data.get(name)
    if isinstance(value, list):
        raise BadRequest(400, f"<{name}> given more than once")
    if value is not None and not isinstance(value, str):
        raise BadRequest(400, f"<{name}> is not text")
    if value is None and required:
        raise BadRequest(400, f"<{name}> missing")
    if value is not None and "\x00" in value:
        raise BadRequest(400, f"<{name}> holds a NUL character")
    return value


def _matching(pattern: re.Pattern[str], value: str | None, name: str) -> str:
    if value is None or not pattern.fullmatch(value):
        raise BadRequest(400, f"<{name}> is malformed")
    return value


def read_message(xml: str) -> WeChatMessage:
    """The message in WeChat's XML, or BadRequest (400) for anything else: broken XML, a field given twice,
    missing or of the wrong type (a MsgId that is not a 64-bit number, a CreateTime that is not a time)."""
    try:
        document = xmltodict.parse(xml)
    except Exception as exc:  # expat refuses broken XML, NUL characters (even as &#0;), bad encodings
        raise BadRequest(400, f"malformed body ({type(exc).__name__})") from exc
    data = document.get("xml") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise BadRequest(400, "not a WeChat message")
    for name, value in data.items():
        if isinstance(value, list):
            raise BadRequest(400, f"<{name}> given more than once")
    account = _matching(_ID, _scalar(data, "ToUserName", required=True), "ToUserName")
    openid = _matching(_ID, _scalar(data, "FromUserName", required=True), "FromUserName")
    created = int(_matching(_TIMESTAMP, _scalar(data, "CreateTime", required=True), "CreateTime"))
    kind = _matching(_WORD, _scalar(data, "MsgType", required=True), "MsgType").lower()
    msg_id: int | None = None
    event, event_key = "", ""
    if kind == "event":
        event = _matching(_WORD, _scalar(data, "Event", required=True), "Event").lower()
        event_key = _scalar(data, "EventKey") or ""
    else:
        msg_id = int(_matching(_MSG_ID, _scalar(data, "MsgId", required=True), "MsgId"))
        if msg_id >= 2**64:
            raise BadRequest(400, "<MsgId> is out of range")
    content = (_scalar(data, "Content") or "") if kind == "text" else ""
    return WeChatMessage(account, openid, created, kind, msg_id, content, event, event_key)


def leading_of(runtime: Runtime) -> Callable[[], bool]:
    """Whether this process leads right now (`runtime.leader`: on SQLite always; a runtime without one leads)."""

    def leading() -> bool:
        leader = getattr(runtime, "leader", None)
        return True if leader is None else bool(leader.leading)

    return leading


def choice_number(text: str) -> int | None:
    """A reply that is a number, in any script's digits: '3', '３' (full width), '٣', '①', '⑩', '²'.

    Decimal digits of any script, one or two of them, or one character that stands for a whole number
    (circled, parenthesised, superscript); None for anything else ('abc5', '-1', '½', '三')."""
    text = text.strip()
    if not text or len(text) > 2:
        return None
    if all(unicodedata.category(c) == "Nd" for c in text):
        return int("".join(str(unicodedata.decimal(c)) for c in text))
    if len(text) == 1 and unicodedata.category(text) == "No":
        value = unicodedata.numeric(text, -1.0)
        if value >= 0 and value == int(value) and value < 100:
            return int(value)
    return None


def reply_xml(message: WeChatMessage, text: str) -> str:
    """The passive text answer; a ']]>' in the text cannot close its CDATA section."""
    safe = text.replace("]]>", "]]]]><![CDATA[>")
    return str(TextReply(source=message.account, target=message.openid, content=safe).render())


def signature_of(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


BIND_TRIES = 3
"""A batch of nonce bindings that PostgreSQL picked as a deadlock's victim (or a serialization conflict) is run
again, up to this many times in all."""


def _is_conflict(exc: BaseException) -> bool:
    """A deadlock or serialization failure (SQLSTATE 40P01 / 40001): the transaction may simply run again."""
    return getattr(exc, "sqlstate", None) in ("40P01", "40001")


class NonceBinder:
    """Binds (timestamp, nonce) pairs to message digests in the database, many requests to one transaction.

    Under a burst every request needs its binding before its answer; one small transaction each would
    double the queue at the database's write lock (each hand-off of the lock costs a turn of the event
    loop). Requests that arrive while a binding transaction waits or runs join the next one instead."""

    def __init__(self, db: Database, clock: Callable[[], int]) -> None:
        self._db = db
        self._clock = clock
        self._waiting: list[tuple[str, str, str, int, tuple[str, str] | None, asyncio.Future[bool]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._pruned_at = 0

    async def bind(
        self, timestamp: str, nonce: str, digest: str, keep_until: int, kept: tuple[str, str] | None = None
    ) -> bool:
        """True when the pair is new or was first seen with `digest` (a retry); False: another body came first.
        With `kept` (the message's key and XML), a bound message is also stored in the inbox, in the same
        transaction: from then on it is handled even if this process dies before it is (`resume_kept`)."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiting.append((timestamp, nonce, digest, keep_until, kept, future))
        if self._flusher is None:
            self._flusher = asyncio.ensure_future(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch: list[tuple[str, str, str, int, tuple[str, str] | None, asyncio.Future[bool]]] = []
                results: list[bool] = []
                for attempt in range(BIND_TRIES):
                    try:
                        async with self._db.transaction() as repos:
                            if not batch:
                                batch, self._waiting = self._waiting, []  # all that queued while the lock was busy
                            # One statement, in the pairs' order: another process's batch with some of the same
                            # pairs (WeChat's retries land anywhere) locks them in the same order.
                            results = await repos.wechat_nonces.bind_many([item[:4] for item in batch])
                            kept = [item[4] for item, ok in zip(batch, results, strict=True) if ok and item[4]]
                            await repos.inbox.store_many(CHANNEL, kept, self._clock())
                        break
                    except Exception as exc:
                        if attempt + 1 < BIND_TRIES and _is_conflict(exc):
                            continue  # PostgreSQL broke a lock cycle or a conflict: the same batch again
                        # a storage fault: each waiting request answers 503, WeChat retries
                        for *_, future in batch or self._waiting:
                            if not future.done():
                                future.set_exception(exc)
                        if not batch:
                            self._waiting = []
                        batch = []
                        break
                for (*_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                await self._prune()
        finally:
            self._flusher = None

    async def _prune(self) -> None:
        """Forget pairs too old to be accepted again, at most every NONCE_PRUNE_SECONDS, in a transaction of its
        own (a bulk delete never holds up a batch of bindings)."""
        now = self._clock()
        if now - self._pruned_at < NONCE_PRUNE_SECONDS:
            return
        self._pruned_at = now
        try:
            async with self._db.transaction() as repos:
                await repos.wechat_nonces.prune(now)
        except Exception as exc:
            log.warning("wechat: forgetting old nonces failed (tried again later): %s", exc)


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
        self._answers: OrderedDict[str, asyncio.Future[Answer]] = OrderedDict()
        self._tasks: set[asyncio.Task[Any]] = set()
        # Answers run a few at a time: under a burst the first ones still finish inside WeChat's window
        # instead of all finishing together at the end.
        self._slots = asyncio.Semaphore(ANSWERING_AT_ONCE)
        self.nonces: NonceBinder | None = None
        self.tokens: TokenKeeper | None = None
        self.shared = False
        """Other processes use the database too: answers are kept there for their retries."""
        self.not_kept_in_time = 0
        """Messages answered `success` before their binding had kept them (a swamped process; see
        `WeChatHandler._success_once_kept`)."""
        self._delivered: OrderedDict[str, str] = OrderedDict()
        """Message key -> LATE or PASSIVE, when the database does not keep the answers (`shared` is false)."""

    async def attach(self, runtime: Runtime, web: WebServer) -> None:
        self.runtime = runtime
        self.nonces = NonceBinder(runtime.deps.db, runtime.deps.now_ts)
        leading = leading_of(runtime)
        session = SharedSession(runtime.deps.db, asyncio.get_running_loop(), runtime.deps.now_ts)
        self.client.share(session, leading)
        self.tokens = TokenKeeper(self.client, session, leading)
        self.shared = bool(getattr(getattr(runtime, "leader", None), "shared", False))
        choice_line = runtime.deps.texts.t("wechat.choice")
        self.pusher = WeChatPusher(self.config, runtime.deps.db, self.client, choice_line, runtime.deps.clock,
                                   staff=runtime.settings.staff.wechat)  # fmt: skip
        runtime.outbox.register(self.pusher)
        # The runtime's scheduler runs on the leading process only; a new leader also looks at the token at once
        # (a follower may be waiting for one).
        runtime.on_lead(self._refresh_token)
        runtime.scheduler.add_job(self.tokens.refresh, "interval", seconds=REFRESH_EVERY_SECONDS,
                                  id="wechat_access_token", replace_existing=True)  # fmt: skip
        runtime.scheduler.add_job(self.prune_answers, "interval", seconds=PRUNE_ANSWERS_EVERY_SECONDS,
                                  id="wechat_prune_answers", replace_existing=True)  # fmt: skip
        runtime.scheduler.add_job(self.resume_kept, "interval", seconds=UNDELIVERED_EVERY_SECONDS,
                                  id="wechat_resume_kept", replace_existing=True)  # fmt: skip
        if self.shared:
            runtime.scheduler.add_job(self.deliver_undelivered, "interval", seconds=UNDELIVERED_EVERY_SECONDS,
                                      id="wechat_undelivered", replace_existing=True)  # fmt: skip
        web.mount("/wechat", WeChatHandler, channel=self)

    async def _refresh_token(self) -> None:
        if self.tokens is not None:
            await self.tokens.refresh()

    async def deliver_undelivered(self) -> int:
        """Send late the stored answers nobody delivered: their worker died after committing and WeChat's retries
        (if any) found no worker with room. Each is claimed first, so it goes out once. Returns how many."""
        assert self.runtime is not None
        if self.pusher is None:
            return 0
        deps = self.runtime.deps
        async with deps.db.read() as repos:
            waiting = await repos.wechat_answers.undelivered(deps.now_ts() - UNDELIVERED_AFTER_SECONDS, 200)
        sent = 0
        for key, stored in waiting:
            openid = key.split(":")[2] if key.count(":") >= 3 else ""
            if not openid:
                continue
            async with deps.db.transaction() as repos:
                if not await repos.wechat_answers.claim_late(key, deps.now_ts()):
                    continue
            answer = Answer.decoded(stored, key, first=False)
            try:
                result = await self.pusher.send_now(openid, answer.text, answer.buttons)
            except Exception as exc:
                log.warning("undelivered WeChat answer to %s not sent: %r", openid, exc)
                continue
            sent += 1
            log.info("undelivered WeChat answer to %s: %s %s", openid, result.outcome.value, result.error)
        return sent

    async def prune_answers(self) -> int:
        """Forget stored answers no retry can ask for any more."""
        assert self.runtime is not None
        async with self.runtime.deps.db.transaction() as repos:
            return await repos.wechat_answers.prune(self.runtime.deps.now_ts() - STORED_ANSWERS_SECONDS)

    async def stop(self) -> None:
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=10)

    # --- ChannelPort -------------------------------------------------------------------------------
    def is_vip_chat(self, msg: Inbound) -> bool:
        return True  # followers of the Official Account are the community; there are no group chats

    async def role_of(self, msg: Inbound) -> Role | None:
        """The role `staff.wechat` lists the OpenID with (an Official Account has no group admins)."""
        return self.settings.staff.wechat.get(msg.sender.external_id)

    async def is_group_member(self, msg: Inbound) -> bool:
        return True

    # --- requests ----------------------------------------------------------------------------------
    def now(self) -> int:
        """The bot's clock (injectable in tests), in unix seconds."""
        assert self.runtime is not None
        return self.runtime.deps.now_ts()

    def verify_plain(self, query: dict[str, str]) -> bool:
        """The plain signature: sha1 over token, timestamp and nonce (not the body), compared in constant time."""
        expected = signature_of(self.token, query.get("timestamp", ""), query.get("nonce", "")).encode()
        return hmac.compare_digest(expected, query.get("signature", "").encode("utf-8", "replace"))

    def check_fresh(self, timestamp: str) -> None:
        """Refuse a timestamp too far from the bot's clock: a replayed URL is stale within minutes."""
        skew = int(timestamp) - self.now()
        if abs(skew) > self.config.timestamp_tolerance_seconds:
            raise BadRequest(403, f"timestamp {skew:+d} s from the bot's clock")

    async def bind_nonce(self, timestamp: str, nonce: str, xml: str, message: WeChatMessage | None = None) -> None:
        """Bind (timestamp, nonce) to this message; refuse it (403) if another body came first with them. With
        `message`, one the dispatcher will handle is kept in the inbox in the same transaction."""
        assert self.nonces is not None
        digest = hashlib.sha256(xml.encode()).hexdigest()
        keep_until = int(timestamp) + self.config.timestamp_tolerance_seconds
        kept = (message.key, xml) if message is not None and resumable(message) else None
        if not await self.nonces.bind(timestamp, nonce, digest, keep_until, kept):
            raise BadRequest(403, "timestamp and nonce seen with another body")

    def take_in(
        self, message: WeChatMessage, timestamp: str, nonce: str, xml: str
    ) -> tuple[asyncio.Future[None], asyncio.Task[Answer]]:
        """Start the last check (the nonce binding, in the database, which keeps the message too) and the answer
        after it: the binding's future (done once the message is stored: WeChat may be told `success`) and
        the answer's task."""
        bound = asyncio.ensure_future(self.bind_nonce(timestamp, nonce, xml, message))

        async def answered() -> Answer:
            await asyncio.shield(bound)
            return await self.answer(message)

        return bound, asyncio.ensure_future(answered())

    async def accept(self, message: WeChatMessage, timestamp: str, nonce: str, xml: str) -> Answer:
        """The last check, then the answer (`take_in`, awaited)."""
        return await self.take_in(message, timestamp, nonce, xml)[1]

    async def resume_kept(self) -> int:
        """Handle the messages kept at their binding that no process finished: the one that had them died (after
        telling WeChat `success`, or before, and WeChat's retries found no worker with room). Each is answered
        late through customer service, once. One in hand here is left to its attempt, one in hand elsewhere to
        that process until it is RESUME_AFTER_SECONDS old (a swamped worker's backlog), and the claims decide
        if both finish. Returns how many were handled."""
        assert self.runtime is not None
        deps = self.runtime.deps
        async with deps.db.read() as repos:
            kept = await repos.inbox.pending(CHANNEL, RESUME_BATCH,
                                             received_before=deps.now_ts() - RESUME_AFTER_SECONDS)  # fmt: skip
        handled = 0
        for item in kept:
            if item.key in self._answers:  # in hand here (a backlog): its own attempt answers it
                continue
            try:
                message: WeChatMessage | None = read_message(item.payload)
            except BadRequest:
                message = None
            if message is None or message.key != item.key or not isinstance(await self.to_inbound(message), Inbound):
                log.warning("wechat: kept message %s needs no handling (or cannot be read): marked done", item.key)
                async with deps.db.transaction() as repos:
                    await repos.inbox.claim(item.key, CHANNEL, deps.now_ts())
                continue
            try:
                answer = await self.answer(message)
            except Exception:
                log.exception("wechat: kept message %s failed (tried again later)", item.key)
                continue
            if answer.key is None:  # a storage fault: the message stays kept, the next sweep tries again
                continue
            handled += 1
            await self.send_late(message.openid, answer)
        return handled

    # --- messages ----------------------------------------------------------------------------------
    async def to_inbound(self, message: WeChatMessage) -> Inbound | Reply | None:
        """The message as an Inbound; a Reply when the channel answers itself (a number that is none of the
        member's choices); None for what needs no handler (and records unsubscribes)."""
        assert self.runtime is not None
        openid, kind = message.openid, message.kind
        texts = self.runtime.deps.texts
        text, button = "", None
        now = self.runtime.deps.now_ts()
        if kind == "text":
            text = message.content.strip()
            number = choice_number(text)
            if number is not None:  # a numbered choice stands for a button
                async with self.runtime.deps.db.read() as repos:
                    since = now - CHOICES_VALID_SECONDS
                    button = await repos.channel_state.choice(CHANNEL, openid, number, since)
                    offered = button is not None or await repos.channel_state.choice(CHANNEL, openid, 1, since)
                if not offered:
                    button = None  # no choices on offer: the text goes on as it is
                elif button is None:
                    return Reply(texts.t("wechat.no_such_choice", n=number))
        elif kind == "event":
            if message.event == "subscribe":
                text = "/start"
            elif message.event == "unsubscribe":
                async with self.runtime.deps.db.transaction() as repos:
                    await repos.channel_state.unsubscribed(CHANNEL, openid, now)
                return None
            elif message.event == "click":
                text = self.config.menu.get(message.event_key, "/help")
            else:
                return None
        identity = Identity(CHANNEL, openid, texts.t("wechat.name", tail=openid[-4:]), None)
        return Inbound(
            channel=CHANNEL, chat_id=openid, sender=identity, text="" if button else text, is_group=False,
            key=message.key, message_id=str(message.msg_id or ""), addressed_to_bot=True, button=button,
        )  # fmt: skip

    async def answer(self, message: WeChatMessage) -> Answer:
        """Handle a message once; a retry of the same message (on this process or another) gets the same answer."""
        assert self.runtime is not None
        msg = await self.to_inbound(message)
        if msg is None:
            return Answer("")
        if isinstance(msg, Reply):
            return self.rendered([msg])
        existing = self._answers.get(msg.key)
        if existing is not None:
            return replace(await asyncio.shield(existing), first=False)
        future: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._answers[msg.key] = future
        while len(self._answers) > ANSWERS_KEPT:
            self._answers.popitem(last=False)
        try:
            answer = await self._handle(msg)
        except Exception as exc:
            self._forget(msg.key, future)
            future.set_exception(exc)
            future.exception()  # a retry may never ask
            raise
        future.set_result(answer)
        if answer.key is None:  # not handled (a storage fault): a retry from now on tries again
            self._forget(msg.key, future)
        return answer

    def _forget(self, key: str, future: asyncio.Future[Answer]) -> None:
        if self._answers.get(key) is future:
            del self._answers[key]

    async def _handle(self, msg: Inbound) -> Answer:
        """The dispatcher's answer, stored with the message's "done" mark; for a message handled already (by
        another process, or before a restart) the answer stored then."""
        assert self.runtime is not None
        deps = self.runtime.deps

        async def keep(repos: Repos, member_id: int | None, replies: list[Reply], staff_command: bool) -> None:
            answer = self.rendered(replies)
            if self.shared and not answer.empty:
                await repos.wechat_answers.record(msg.key, answer.encoded(), deps.now_ts())

        # The dispatcher's intake records the member's message, which opens their push window.
        async with self._slots:
            handled = await self.dispatcher.handle_update(msg, self, keep)
        if not handled.repeat:
            return replace(self.rendered(handled.replies), key=msg.key if handled.committed else None)
        stored = None
        if self.shared:
            async with deps.db.read() as repos:
                stored = await repos.wechat_answers.answer(msg.key)
        if stored is None:  # handled before answers were stored, or long ago: nothing to repeat
            return Answer("", first=False)
        return Answer.decoded(stored, msg.key, first=False)

    def rendered(self, replies: list[Reply]) -> Answer:
        """All replies as one text (WeChat answers once); their buttons become numbered choices."""
        assert self.runtime is not None
        texts = self.runtime.deps.texts
        parts = []
        for reply in replies:
            part = reply.text
            if reply.document is not None or reply.image is not None:
                part += "\n" + texts.t("wechat.attachment")
            parts.append(part)
        return Answer("\n\n".join(p for p in parts if p), tuple(b for r in replies for b in r.buttons))

    def passive_text(self, answer: Answer) -> str:
        """The answer as the HTTP response shows it: the text, then the buttons as numbered choices."""
        assert self.runtime is not None
        return with_choices(answer.text, answer.buttons, self.runtime.deps.texts.t("wechat.choice"))

    async def remember_choices(self, openid: str, buttons: tuple[Button, ...]) -> None:
        if buttons and self.runtime is not None:
            async with self.runtime.deps.db.transaction() as repos:
                await repos.channel_state.set_choices(CHANNEL, openid, [(b.label, b.data) for b in buttons],
                                                      self.runtime.deps.now_ts())  # fmt: skip

    async def claim_passive(self, answer: Answer) -> bool:
        """May this attempt give the answer in its HTTP response? Not once it went out by customer service. The
        first attempt claims too: on a busy worker WeChat may already have cut it and retried elsewhere, and that
        retry may have handled the message first, so its own late delivery must see this answer went out."""
        if answer.key is None or self.runtime is None:
            return True
        if not self.shared:
            return self._deliver_here(answer.key, PASSIVE)
        try:
            async with self.runtime.deps.db.transaction() as repos:
                return await repos.wechat_answers.claim_passive(answer.key, self.runtime.deps.now_ts())
        except Exception as exc:  # a storage fault: answering twice beats not answering
            log.warning("wechat: could not record the answer to a retry of %s: %s", answer.key, exc)
            return True

    async def deliver_late(self, openid: str, task: asyncio.Task[Answer]) -> None:
        """The answer missed the 5-second window: send it through the customer-service API unless it went out
        already, late or to a retry in its HTTP response (the claim decides, once). Any attempt that said
        `success` may be the one: the attempt that handled the message may have died after committing, and its
        retries then carry the only copy of the answer still on its way."""
        try:
            answer = await task
        except BadRequest as bad:
            log.warning("wechat: refused %s (%s) after the reply window", bad.reason, bad.status)
            return
        except Exception:
            log.exception("WeChat message from %s failed after the reply window", openid)
            return
        await self.send_late(openid, answer)

    async def send_late(self, openid: str, answer: Answer) -> None:
        """Send `answer` through the customer-service API unless it went out already (the claims decide)."""
        if answer.empty or self.pusher is None or self.runtime is None:
            return
        if answer.key is None and not answer.first:
            return  # a retry's own reply (a refusal, not the stored answer): the first attempt sends it
        if answer.key is not None and not self.shared:
            if not self._deliver_here(answer.key, LATE):
                log.info("late WeChat answer to %s: a retry was answered with it already", openid)
                return
        elif answer.key is not None:
            try:
                async with self.runtime.deps.db.transaction() as repos:
                    claimed = await repos.wechat_answers.claim_late(answer.key, self.runtime.deps.now_ts())
            except Exception:
                log.exception("wechat: could not claim the late answer to %s", openid)
                return
            if not claimed:
                log.info("late WeChat answer to %s: a retry was answered with it already", openid)
                return
        try:
            result = await self.pusher.send_now(openid, answer.text, answer.buttons)
        except Exception as exc:  # the database or a worker thread gave up (the answer is lost; logged)
            log.warning("late WeChat answer to %s not sent: %r", openid, exc)
            return
        log.info("late WeChat answer to %s: %s %s", openid, result.outcome.value, result.error)

    def _deliver_here(self, key: str, how: str) -> bool:
        """The claims of `WeChatAnswerRepo` in memory: a late answer only while none went out, a retry's answer
        only while no late one did."""
        done = self._delivered.get(key)
        if done == LATE or (done == PASSIVE and how == LATE):
            return False
        self._delivered[key] = how
        while len(self._delivered) > ANSWERS_KEPT:
            self._delivered.popitem(last=False)
        return True

    def track(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class WeChatHandler(LimitedHandler):
    """GET: the URL check. POST: messages and events, plain or encrypted, answered in the same mode."""

    def initialize(self, channel: WeChatChannel, max_body: int) -> None:  # type: ignore[override]
        self.max_body = max_body
        self.channel = channel

    def prepare(self) -> None:
        """Record the arrival (the body has just been read): WeChat's 5 seconds run from about then."""
        self.arrived = time.monotonic()
        self.gone = False
        """The client closed the connection (`on_connection_close`)."""
        super().prepare()

    def _query(self) -> dict[str, str]:
        """The query fields WeChat sends; an undecodable one is tornado's 400."""
        return {k: self.get_query_argument(k, "") for k in
                ("signature", "timestamp", "nonce", "echostr", "encrypt_type", "msg_signature", "openid")}  # fmt: skip

    def _refuse(self, status: int, reason: str) -> None:
        log.warning("wechat: refused %s (%s) from %s", reason, status, self.request.remote_ip)
        self.set_status(status)
        self._plain(reason)

    def _plain(self, text: str) -> None:
        """Answer as plain text the browser may not sniff into HTML (the echo is the caller's own string)."""
        self.set_header("Content-Type", "text/plain; charset=utf-8")
        self.set_header("X-Content-Type-Options", "nosniff")
        self.finish(text)

    def _checked_query(self) -> dict[str, str]:
        query = self._query()
        if not _TIMESTAMP.fullmatch(query["timestamp"]) or not _NONCE.fullmatch(query["nonce"]):
            raise BadRequest(400, "malformed timestamp or nonce")
        if query["openid"] and not _ID.fullmatch(query["openid"]):
            raise BadRequest(400, "malformed openid")
        for name in ("signature", "msg_signature"):
            if query[name] and not _SIGNATURE.fullmatch(query[name]):
                raise BadRequest(403, f"bad {name}")
        return query

    async def get(self) -> None:
        """The URL check: echo `echostr` as plain text, only under a valid signature."""
        try:
            query = self._checked_query()
        except BadRequest as bad:
            self._refuse(bad.status, bad.reason)
            return
        if not self.channel.verify_plain(query):
            self._refuse(403, "bad signature")
            return
        self._plain(query["echostr"])

    async def post(self) -> None:
        try:
            query = self._checked_query()
            encrypted = query["encrypt_type"] == "aes"
            message, xml = self._message(query, encrypted)
        except BadRequest as bad:
            self._refuse(bad.status, bad.reason)
            return
        await self._answer(message, xml, query, encrypted)

    def _message(self, query: dict[str, str], encrypted: bool) -> tuple[WeChatMessage, str]:
        """The checks of the request itself, in order (see the module's docstring; the nonce binding, which
        needs the database, comes in `_answer`): the message and its XML, or BadRequest."""
        channel = self.channel
        if (encrypted and channel.crypto is None) or (not encrypted and channel.config.mode == "safe"):
            raise BadRequest(400, "wrong encryption mode")
        if not encrypted and not channel.verify_plain(query):
            raise BadRequest(403, "bad signature")
        channel.check_fresh(query["timestamp"])
        try:
            xml = self.request.body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise BadRequest(400, "malformed body (not UTF-8)") from exc
        if encrypted:
            xml = self._decrypt(xml, query)
        message = read_message(xml)
        if query["openid"] and query["openid"] != message.openid:
            raise BadRequest(403, "the query's openid is not the sender")
        return message, xml

    def _decrypt(self, body: str, query: dict[str, str]) -> str:
        assert self.channel.crypto is not None
        try:
            envelope = xmltodict.parse(body).get("xml")
        except Exception as exc:
            raise BadRequest(400, f"malformed body ({type(exc).__name__})") from exc
        if not isinstance(envelope, dict) or not isinstance(envelope.get("Encrypt"), str):
            raise BadRequest(400, "no single <Encrypt> in the body")
        try:
            return str(self.channel.crypto.decrypt_message(envelope, query["msg_signature"], query["timestamp"],
                                                           query["nonce"]))  # fmt: skip
        except (InvalidSignatureException, InvalidAppIdException) as exc:
            raise BadRequest(403, "bad signature") from exc
        except Exception as exc:  # not our key's ciphertext, broken padding, not UTF-8
            raise BadRequest(400, f"malformed body ({type(exc).__name__})") from exc

    def on_connection_close(self) -> None:
        """WeChat (or whoever asked) closed the connection: it waits no more, and will try again."""
        self.gone = True
        super().on_connection_close()

    def _go_late(self, message: WeChatMessage, answer: Answer) -> None:
        """Send the ready answer through customer service, only while no attempt claimed it for its response
        (this attempt's client is gone; WeChat has tried again or will)."""
        self.channel.track(asyncio.ensure_future(self.channel.send_late(message.openid, answer)))

    async def _success_once_kept(
        self, message: WeChatMessage, bound: asyncio.Future[None], task: asyncio.Task[Answer]
    ) -> None:
        """The answer missed the budget: tell WeChat `success` (its answer goes late). The message's binding,
        its first step, has kept it in the database by then (it takes milliseconds), so it is handled even if
        this process dies now. Only a process so swamped that even the binding has not finished says `success`
        before the message is kept, and counts it: a 503, or waiting longer for the binding, there made WeChat
        try again into the same swamp (at 10,000 messages on one worker 98% were given up). A storage fault
        is a 503."""
        late = self.channel.deliver_late(message.openid, task)
        if bound.done() and bound.exception() is not None:
            late.close()
            task.add_done_callback(lambda t: t.cancelled() or t.exception())  # it fails the same way: seen
            error = bound.exception()
            if isinstance(error, BadRequest):
                self._refuse(error.status, error.reason)
                return
            log.error("wechat: could not keep %s: %r", message.key, error)
            self.set_status(503)
            self._plain("busy")
            return
        if not bound.done():
            self.channel.not_kept_in_time += 1
        self.channel.track(asyncio.ensure_future(late))
        self.finish("success")

    async def _answer(self, message: WeChatMessage, xml: str, query: dict[str, str], encrypted: bool) -> None:
        bound, task = self.channel.take_in(message, query["timestamp"], query["nonce"], xml)
        # The budget counts from the request's arrival: WeChat's 5 seconds started then.
        budget = self.channel.config.reply_budget_seconds - (time.monotonic() - self.arrived)
        try:
            answer = await asyncio.wait_for(asyncio.shield(task), max(budget, 0.01))
        except BadRequest as bad:
            self._refuse(bad.status, bad.reason)
            return
        except TimeoutError:
            await self._success_once_kept(message, bound, task)
            return
        except Exception:  # the nonce could not be recorded (a storage fault): WeChat will retry
            log.exception("wechat: could not check the request's nonce")
            self.set_status(503)
            self._plain("busy")
            return
        if answer.empty:
            self.finish("success")  # nothing to say
            return
        if self.gone:  # WeChat cut this attempt: the answer in its response would reach nobody
            self._go_late(message, answer)
            return
        if not await self.channel.claim_passive(answer):
            self.finish("success")  # the answer went out by customer service
            return
        await self.channel.remember_choices(message.openid, answer.buttons)
        body = reply_xml(message, self.channel.passive_text(answer))
        if encrypted:
            assert self.channel.crypto is not None
            body = self.channel.crypto.encrypt_message(body, query["nonce"], query["timestamp"])
        self.set_header("Content-Type", "application/xml; charset=utf-8")
        self.finish(body)
