"""The Telegram adapter: stored updates in (see `bot.telegram.intake`), neutral Inbound to the dispatcher,
Replies routed to the sender (see `bot.delivery.sender`): privately or into the group, coalesced, or onto the day's
check-in board. No business rules live here: only translation, routing and the rights lookups.

Rights come from the configuration only: staff listed with their role in `staff.telegram`, the admins of the
groups listed in `telegram.groups` when `staff.group_admins` gives them a role, and the members of those groups.
The bot serves no other group (the dispatcher tells its owner how to list it), so owning a group the bot was
added to gives no rights at all. A lookup Telegram fails to answer raises `RightsUnknown`: the command is
answered with the apology, never guessed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from cachetools import LRUCache, TTLCache
from telegram import ChatMember, ChatMemberAdministrator, ChatMemberOwner, Update, User
from telegram.constants import MessageLimit
from telegram.error import BadRequest, TelegramError
from telegram.ext import Application, ApplicationBuilder

from bot.app.config import Settings
from bot.app.runtime import Runtime
from bot.app.web import WebServer
from bot.delivery.sender import Delivered, Job, Outcome, Pace, Priority, Sender
from bot.telegram.buttons import CLOSE_KEYBOARD, SHARE_CONTACT
from bot.telegram.intake import Intake
from bot.telegram.menus import MenuRegistrar, build_menus
from bot.telegram.push import TelegramPusher
from bot.telegram.sender import CALLBACK_SCOPE, TelegramTransport
from bot.telegram.webhook import TelegramWebhookHandler
from handlers.checkin.board import render_board
from handlers.core.deps import Deps
from handlers.core.dispatch import Dispatcher
from handlers.core.messages import Contact, Document, Identity, Inbound, Reply
from handlers.core.ports import DocumentTooLarge, RightsUnknown
from handlers.core.roles import Role
from handlers.customers import CONTACT_COMMAND, FILE_COMMAND, IMPORT_SUFFIXES
from storage.repos import Repos

log = logging.getLogger(__name__)

CHANNEL = "telegram"
ADMIN_FAILURE_SECONDS = 5.0
"""After a failed getChatAdministrators the group is not asked again for this long (at most the cache time):
staff commands get the apology meanwhile instead of each one waiting for Telegram to fail again."""
MEMBER_CACHE_SIZE = 50_000
"""Members whose group membership is remembered (each for `telegram.member_cache_seconds`); forgetting one
only costs a question to Telegram."""
APOLOGY_MEMORY = 10_000
APOLOGY_SECONDS = 600.0
"""Updates apologised for while storage fails: each once, remembered this long (and at most this many)."""
DOCUMENT_LIMIT = 10 * 1024 * 1024
"""Files larger than this are not downloaded (the Bot API serves at most 20 MB)."""
BOARD_MEMORY = 64
"""Boards (group, business day) whose last text and count are remembered; forgetting one costs one edit."""


def identity_of(user: User) -> Identity:
    return Identity(CHANNEL, str(user.id), user.full_name, user.username)


def to_inbound(update: Update, staff_chat: int | None = None) -> Inbound | None:
    """Translate an update; None for what the bot ignores (edits, channel posts, bots, anonymous admins). A
    file in a private chat (or in `staff_chat`) and a shared phone number in a private chat become the hidden
    commands of `handlers.customers` that read them."""
    query = update.callback_query
    if query is not None:
        return _button_inbound(update)
    if update.poll_answer is not None:
        return _poll_answer_inbound(update)
    message = update.message
    if message is None or message.from_user is None:
        return None
    if message.from_user.is_bot or message.sender_chat is not None:
        return None
    replied = message.reply_to_message
    reply_to = None
    if replied is not None and replied.from_user is not None and not replied.from_user.is_bot:
        if replied.sender_chat is None:
            reply_to = identity_of(replied.from_user)
    chat = message.chat
    to_bot = replied is not None and replied.from_user is not None and replied.from_user.id == message.get_bot().id
    is_group = chat.type in (chat.GROUP, chat.SUPERGROUP)
    document, contact, button = None, None, None
    if message.document is not None and (not is_group or chat.id == staff_chat):
        found = message.document
        document = Document(found.file_name or "", found.file_size or 0, found.file_id)
        button = f"v1:{FILE_COMMAND}:"
    elif message.contact is not None and not is_group:
        shared = message.contact
        # Only the contact-request key sends the sender's own card; a forwarded or typed-in one names another.
        own = shared.user_id == message.from_user.id and message.forward_origin is None
        contact = Contact(shared.phone_number, own)
        button = f"v1:{CONTACT_COMMAND}:"
    return Inbound(
        channel=CHANNEL,
        chat_id=str(chat.id),
        sender=identity_of(message.from_user),
        text=message.text or message.caption or "",
        is_group=is_group,
        key=f"{CHANNEL}:update:{update.update_id}",
        message_id=str(message.message_id),
        thread_id=message.message_thread_id if message.is_topic_message else None,
        reply_to=reply_to,
        addressed_to_bot=to_bot,
        button=button,
        document=document,
        contact=contact,
    )


def file_url_of(base_url: str) -> str:
    """Where the Bot API serves downloads: ``…/bot`` becomes ``…/file/bot``."""
    return base_url[: -len("bot")] + "file/bot" if base_url.endswith("/bot") else base_url.rstrip("/") + "/file/bot"


def _poll_answer_inbound(update: Update) -> Inbound | None:
    """An answer to a native poll the bot sent, as the hidden command ``native_vote``."""
    answer = update.poll_answer
    assert answer is not None
    if answer.user is None or answer.user.is_bot:
        return None  # answered on behalf of a chat: not a member
    options = ",".join(str(o) for o in answer.option_ids)
    return Inbound(
        channel=CHANNEL,
        chat_id=str(answer.user.id),
        sender=identity_of(answer.user),
        text="",
        is_group=False,
        key=f"{CHANNEL}:update:{update.update_id}",
        button=f"v1:native_vote:{answer.poll_id} {options}",
    )


def _button_inbound(update: Update) -> Inbound | None:
    query = update.callback_query
    assert query is not None
    if query.from_user.is_bot or not query.data:
        return None
    message = query.message
    chat_id = message.chat.id if message is not None else query.from_user.id
    is_group = message is not None and message.chat.type in (message.chat.GROUP, message.chat.SUPERGROUP)
    return Inbound(
        channel=CHANNEL,
        chat_id=str(chat_id),
        sender=identity_of(query.from_user),
        text="",
        is_group=is_group,
        key=f"{CHANNEL}:update:{update.update_id}",
        message_id=str(message.message_id) if message is not None else None,
        button=query.data,
    )


def split_text(text: str, limit: int = MessageLimit.MAX_TEXT_LENGTH) -> list[str]:
    """Cut a long text into Telegram-sized pieces, preferring line breaks."""
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut <= 0:
            cut = limit
        pieces.append(text[:cut])
        text = text[cut:].lstrip("\n")
    pieces.append(text)
    return pieces


class TelegramChannel:
    """Owns the python-telegram-bot Application, the intake and the sender; implements the ChannelPort."""

    def __init__(self, settings: Settings, dispatcher: Dispatcher, pace: Pace | None = None) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self._groups = set(settings.telegram.groups)
        self._staff = dict(settings.staff.telegram)
        tg = settings.telegram
        groups = max(len(self._groups), 1)  # rights are only ever asked about the listed groups
        self._admins: TTLCache[int, frozenset[int]] = TTLCache(groups, tg.admin_cache_seconds)
        """Group -> the ids of its admins."""
        self._admin_failures: TTLCache[int, str] = TTLCache(groups, min(ADMIN_FAILURE_SECONDS, tg.admin_cache_seconds))
        """Group -> why its admin list could not be read, for a few seconds."""
        self._admin_lookups: dict[int, asyncio.Task[frozenset[int]]] = {}
        """getChatAdministrators in flight: concurrent updates of one group share one call (each entry goes
        when its call ends)."""
        self._members: TTLCache[int, bool] = TTLCache(MEMBER_CACHE_SIZE, tg.member_cache_seconds)
        """User -> whether a listed group has them."""
        self.application = self._build_application()
        delivery = settings.delivery
        self.transport = TelegramTransport(settings, self.application.bot)
        self.sender = Sender(
            self.transport,
            per_second=delivery.telegram_per_second if settings.telegram.rate_limiter else 1_000_000,
            coalesce_seconds=delivery.coalesce_seconds,
            concurrency=delivery.concurrency,
            pace=pace,
        )
        self.pusher = TelegramPusher(settings, self.sender)
        self.intake: Intake | None = None
        self.runtime: Runtime | None = None
        self._settled: list[int] = []
        self._flusher: asyncio.Task[None] | None = None
        self._apologised: TTLCache[str, bool] = TTLCache(APOLOGY_MEMORY, APOLOGY_SECONDS)
        self._storage_failing = False
        self._board_texts: LRUCache[tuple[str, str], str] = LRUCache(BOARD_MEMORY)
        """The text each board was last drawn with, so an unchanged board is not edited."""
        self._board_counts: LRUCache[tuple[str, str], int] = LRUCache(BOARD_MEMORY)
        """The count each board showed when last sent: the next one lists every check-in since."""
        self._http: httpx.AsyncClient | None = None
        self.leading = False
        """This process leads (handles updates, sends replies); else it only stores what its webhook is posted."""
        self.menus: MenuRegistrar | None = None
        """Registers the command menus in the background after start (see bot.telegram.menus)."""

    def _build_application(self) -> Application:
        tg = self.settings.telegram
        concurrency = self.settings.delivery.concurrency
        pool = concurrency + max(4, concurrency // 2) + 8  # messages, toasts, and the getChat* questions
        builder = (
            ApplicationBuilder()
            .token(self.settings.telegram_token)
            .base_url(tg.base_url)
            .base_file_url(tg.base_file_url or file_url_of(tg.base_url))
            .updater(None)  # updates come through our own intake: stored before they are confirmed
            .connection_pool_size(pool)
            .pool_timeout(30)
        )
        if tg.proxy:  # both of the bot's HTTPXRequest objects; polling's own client takes it in start()
            builder = builder.proxy(tg.proxy).get_updates_proxy(tg.proxy)
        return builder.build()

    @property
    def deps(self) -> Deps:
        assert self.runtime is not None
        return self.runtime.deps

    async def attach(self, runtime: Runtime) -> None:
        """Register the pusher that delivers queued announcements, and the configured VIP groups (groups
        an earlier configuration served, or an earlier version served unlisted, get no more posts)."""
        self.runtime = runtime
        runtime.outbox.register(self.pusher)
        self.dispatcher.faults = self
        self.intake = Intake(
            runtime.deps.db, self._process, workers=self.settings.telegram.concurrent_updates,
            prefetch=self.settings.telegram.prefetch, on_store_fault=self.store_failed,
        )  # fmt: skip
        listed = [str(group) for group in self.settings.telegram.groups]
        async with runtime.deps.db.transaction() as repos:
            for chat_id in await repos.chats.of_channel(CHANNEL):
                if chat_id not in listed:
                    await repos.chats.remove(CHANNEL, chat_id)
                    log.warning("telegram: group %s is not in telegram.groups: it gets no more posts", chat_id)
            for chat_id in listed:
                await repos.chats.add(CHANNEL, chat_id, runtime.deps.now_ts())
        if not listed:
            log.warning("telegram: telegram.groups lists no group, so the bot serves private chats only; "
                        "a group where a command is sent is told its id")  # fmt: skip

    async def start(self, web: WebServer | None = None) -> None:
        """Take updates by webhook on `web` when a URL is configured (every process stores what it is posted);
        the rest when this process leads (`lead`: at once on SQLite, else when the runtime gets the lead)."""
        assert self.runtime is not None
        webhook = self.settings.telegram.webhook
        if webhook.url:
            if web is None:
                raise RuntimeError("webhook mode needs the web server")
            web.mount("/telegram", TelegramWebhookHandler, channel=self, secret=webhook.secret_token.get_secret_value())
        if self.runtime.leader.leading:
            await self.lead()
        else:  # connected (getMe) all the same: a follower's staff command may delete a post (a recall)
            await self.application.initialize()
            self.runtime.on_lead(self.lead)

    async def lead(self) -> None:
        """This process leads: connect (getMe), resume what was stored (by any process), handle updates and send
        replies, and register the webhook (or poll)."""
        assert self.intake is not None and self.runtime is not None
        application = self.application
        await application.initialize()
        await application.start()
        self.leading = True
        self.sender.start()
        self._flusher = asyncio.create_task(self._flush_settled(), name="outbound-settle")
        await self._resume_outbound()
        await self.intake.start(shared=self.runtime.leader.shared)
        self.runtime.leader.listen("vipbot_inbox", self.intake.poke)
        webhook = self.settings.telegram.webhook
        if webhook.url:
            secret = webhook.secret_token.get_secret_value()
            await application.bot.set_webhook(
                url=webhook.url, secret_token=secret or None, allowed_updates=Update.ALL_TYPES
            )
            log.info("telegram: webhook %s -> /telegram", webhook.url)
        else:
            await application.bot.delete_webhook()
            self._http = httpx.AsyncClient(timeout=httpx.Timeout(40.0, connect=10.0),
                                           proxy=self.settings.telegram.proxy or None)  # fmt: skip
            url = f"{self.settings.telegram.base_url}{self.settings.telegram_token}/getUpdates"
            self.intake.poll(self._http, url, list(Update.ALL_TYPES))
            log.info("telegram: polling as @%s", application.bot.username)
        if self.settings.telegram.command_menus:
            self.menus = MenuRegistrar(application.bot, build_menus(self.settings, self.dispatcher.commands))
            self.menus.start()

    @property
    def mode(self) -> str:
        return "webhook" if self.settings.telegram.webhook.url else "polling"

    async def stop(self) -> None:
        """Stop fetching, finish what is in hand (bounded by `telegram.stop_timeout_seconds`), settle."""
        budget = self.settings.telegram.stop_timeout_seconds
        if self.menus is not None:
            await self.menus.stop()
        if self.intake is not None:
            await self.intake.stop(timeout=budget / 2)
        if self.leading:
            await self.sender.stop(timeout=budget / 4)
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
            await self._write_settled()
        if self._http is not None:
            await self._http.aclose()
        application = self.application
        if application.running:
            await application.stop()
        await application.shutdown()

    async def idle(self, timeout: float = 10.0) -> bool:
        """Wait until every stored update is handled and every message sent (tests, benchmarks)."""
        deadline = time.monotonic() + timeout
        assert self.intake is not None
        if not await self.intake.idle(timeout):
            return False
        return await self.sender.idle(max(deadline - time.monotonic(), 0.01))

    # --- ChannelPort -------------------------------------------------------------------------------
    @property
    def bot_username(self) -> str | None:
        try:
            return self.application.bot.username
        except RuntimeError:  # not initialised yet
            return None

    def is_vip_chat(self, msg: Inbound) -> bool:
        """A private chat, or a group listed in `telegram.groups` (none when the list is empty)."""
        return not msg.is_group or int(msg.chat_id) in self._groups

    async def role_of(self, msg: Inbound) -> Role | None:
        """The role `staff.telegram` lists the sender with; else `staff.group_admins` (when set) for an admin of
        a listed group: of this group for a group message, of any listed group in a private chat; else None.
        Raises RightsUnknown when Telegram cannot tell."""
        user_id = int(msg.sender.external_id)
        listed = self._staff.get(user_id)
        if listed is not None:
            return listed
        admins_role = self.settings.staff.group_admins
        if admins_role is None:
            return None  # administering a group gives no role unless the configuration says so
        if msg.is_group:
            chats = [int(msg.chat_id)] if int(msg.chat_id) in self._groups else []
        else:
            chats = sorted(self._groups)
        failure: RightsUnknown | None = None
        for chat_id in chats:
            try:
                if user_id in await self._admins_of(chat_id):
                    return admins_role
            except RightsUnknown as exc:
                failure = exc  # another group may still name them
        if failure is not None:
            raise failure
        return None

    async def is_group_member(self, msg: Inbound) -> bool:
        """Is the sender in one of the listed groups? Asked with getChatMember, remembered for a while.
        Raises RightsUnknown when Telegram cannot tell (no listed group names them, and one failed)."""
        if msg.is_group:
            return self.is_vip_chat(msg)
        user_id = int(msg.sender.external_id)
        cached = self._members.get(user_id)
        if cached is not None:
            return cached
        found = False
        failure: TelegramError | None = None
        for group in sorted(self._groups):
            try:
                member = await self.application.bot.get_chat_member(group, user_id)
            except BadRequest as exc:  # e.g. "user not found": not in that group
                log.info("membership of %s in %s: %s", user_id, group, exc)
                continue
            except TelegramError as exc:
                log.warning("cannot check membership of %s in %s: %s", user_id, group, exc)
                failure = exc
                continue
            if member.status in (ChatMember.OWNER, ChatMember.ADMINISTRATOR, ChatMember.MEMBER) or (
                member.status == ChatMember.RESTRICTED and getattr(member, "is_member", False)
            ):
                found = True
                break
        if not found and failure is not None:
            raise RightsUnknown(f"membership of {user_id}: {failure}") from failure
        self._members[user_id] = found
        return found

    async def _admins_of(self, chat_id: int) -> frozenset[int]:
        """The admins of a listed group: cached, one call at a time per group; RightsUnknown on failure."""
        cached = self._admins.get(chat_id)
        if cached is not None:
            return cached
        failed = self._admin_failures.get(chat_id)
        if failed is not None:
            raise RightsUnknown(f"the admins of chat {chat_id} cannot be read: {failed}")
        lookup = self._admin_lookups.get(chat_id)
        if lookup is None:
            lookup = asyncio.create_task(self._fetch_admins(chat_id), name=f"admins-{chat_id}")
            self._admin_lookups[chat_id] = lookup

            def forget(task: asyncio.Task[frozenset[int]]) -> None:
                if self._admin_lookups.get(chat_id) is task:
                    del self._admin_lookups[chat_id]
                if not task.cancelled():
                    task.exception()  # retrieved here too, should every waiter have gone

            lookup.add_done_callback(forget)
        return await asyncio.shield(lookup)

    async def fetch_document(self, document: Document) -> bytes:
        """A file's bytes through getFile; DocumentTooLarge over `DOCUMENT_LIMIT`."""
        if document.size > DOCUMENT_LIMIT:
            raise DocumentTooLarge(document.name)
        found = await self.application.bot.get_file(document.file_id)
        if (found.file_size or 0) > DOCUMENT_LIMIT:
            raise DocumentTooLarge(document.name)
        data = bytes(await found.download_as_bytearray())
        if len(data) > DOCUMENT_LIMIT:
            raise DocumentTooLarge(document.name)
        return data

    async def _with_document(self, msg: Inbound) -> Inbound:
        """A staff member's import file, fetched before handling (outside any transaction): the handler reads
        `Inbound.document.content`. Other people's files are never downloaded; a file too large, or one
        Telegram cannot give, stays without content and is answered so."""
        document = msg.document
        if document is None or Path(document.name).suffix.lower() not in IMPORT_SUFFIXES:
            return msg
        try:
            if await self.role_of(msg) is None:
                return msg
            return replace(msg, document=replace(document, content=await self.fetch_document(document)))
        except (DocumentTooLarge, RightsUnknown):
            return msg
        except TelegramError as exc:
            log.warning("cannot download %s: %s", document.name, exc)
            return msg

    async def _fetch_admins(self, chat_id: int) -> frozenset[int]:
        try:
            members = await self.application.bot.get_chat_administrators(chat_id)
        except TelegramError as exc:
            log.warning("cannot read the admins of chat %s: %s", chat_id, exc)
            self._admin_failures[chat_id] = str(exc)
            raise RightsUnknown(f"the admins of chat {chat_id} cannot be read: {exc}") from exc
        admins = frozenset(m.user.id for m in members if isinstance(m, ChatMemberAdministrator | ChatMemberOwner))
        self._admin_failures.pop(chat_id, None)
        self._admins[chat_id] = admins
        return admins

    # --- updates in --------------------------------------------------------------------------------
    async def receive(self, update: dict[str, Any]) -> None:
        """A webhook update: stored (raises when storage fails), then handled by the intake's workers of the
        leading process (this one, or the one told by NOTIFY)."""
        assert self.intake is not None and self.runtime is not None
        await self.intake.store([update])
        if not self.leading:
            self.runtime.leader.notify("vipbot_inbox")

    async def _process(self, key: str, raw: dict[str, Any]) -> bool:
        """Handle one stored update; False when storage failed (it is tried again later)."""
        try:
            update = Update.de_json(raw, self.application.bot)
        except Exception as exc:  # a body Telegram would not send: keep it from blocking the queue
            log.warning("update %s cannot be read: %s", key, exc)
            update = None
        msg = to_inbound(update, self.settings.staff.telegram_chat) if update is not None else None
        if msg is None or msg.key != key:
            async with self.deps.db.transaction() as repos:
                await repos.inbox.claim(key, CHANNEL, self.deps.now_ts())
            return True
        assert update is not None
        msg = await self._with_document(msg)
        jobs: list[Job] = []
        boards: list[tuple[str, int | None]] = []

        async def sink(repos: Repos, member_id: int | None, replies: list[Reply], staff: bool) -> None:
            await self._route(repos, update, msg, replies, jobs, boards, staff)

        handled = await self.dispatcher.handle_update(msg, self, sink)
        if not handled.committed:
            self._apologise(key, msg, update, handled.replies)
            return False
        for job in jobs:
            self.sender.submit(job)
        for chat_id, thread in boards:
            self.touch_board(chat_id, thread)
        return True

    # --- replies out -------------------------------------------------------------------------------
    async def _route(self, repos: Repos, update: Update, msg: Inbound, replies: list[Reply], jobs: list[Job],
                     boards: list[tuple[str, int | None]], staff: bool = False) -> None:  # fmt: skip
        """Turn the handler's replies into sender jobs, queued durably in the update's transaction."""
        if update.poll_answer is not None:
            return  # nothing to say to a poll answer
        now = self.deps.now_ts()
        board_on = msg.is_group and self.settings.checkin.board.enabled
        toast: dict[str, Any] | None = None
        if update.callback_query is not None:
            # The first reply shows on the presser's screen only; the rest are sent as usual.
            first = replies[0].text if replies else ""
            payload = {"kind": "callback", "query_id": update.callback_query.id, "text": first[:200],
                       "alert": len(first) > 60 and not (replies and replies[0].board)}  # fmt: skip
            jobs.append(Job(CALLBACK_SCOPE, Priority.ANSWER, payload))
            toast = payload
            if replies and replies[0].board and board_on:
                boards.append((msg.chat_id, msg.thread_id))
            replies = replies[1:]
        if not msg.is_group:
            for held in await repos.outbound.release_held(CHANNEL, msg.chat_id):
                jobs.append(self._job_of(held.id, held.chat_id, held.priority, json.loads(held.payload), held.blob))
        reachable: bool | None = None
        for reply in replies:
            if reply.board and board_on:
                boards.append((msg.chat_id, msg.thread_id))
                if not reply.personal:
                    continue  # the board confirms it
            private_wanted = reply.private or reply.secret or reply.personal
            if msg.is_group and private_wanted and reply.chat_id is None:
                if reachable is None:
                    reachable = await repos.members.can_message_on(CHANNEL, msg.sender.external_id)
                if reachable:
                    await self._queue(repos, jobs, msg.sender.external_id, Priority.ANSWER, reply, msg, now)
                    continue
                if reply.secret or reply.private:
                    # Never where others can read it: it waits for the member's private chat.
                    await self._queue(repos, jobs, msg.sender.external_id, Priority.ANSWER, reply, msg, now, held=True)
                    hint = self.deps.texts.t("common.start_bot_first", bot=self.bot_username or "")
                    if toast is not None:  # a button press: the hint joins the toast, the group hears nothing
                        toast["text"], toast["alert"] = f"{toast['text']}\n{hint}"[:200], True
                        continue
                    await self._queue(repos, jobs, msg.chat_id, Priority.GROUP, Reply(hint, mention=msg.sender), msg,
                                      now, coalesce=True)  # fmt: skip
                    continue
            if reply.chat_id is not None:
                await self._queue(repos, jobs, reply.chat_id, Priority.STAFF, reply, msg, now)
            elif msg.is_group and staff:  # a staff command's answer: before group chatter, not merged into it
                await self._queue(repos, jobs, msg.chat_id, Priority.STAFF, reply, msg, now)
            elif msg.is_group:
                await self._queue(repos, jobs, msg.chat_id, Priority.GROUP, reply, msg, now, coalesce=True)
            else:
                await self._queue(repos, jobs, msg.chat_id, Priority.STAFF if staff else Priority.ANSWER, reply, msg,
                                  now)  # fmt: skip

    async def _queue(self, repos: Repos, jobs: list[Job], chat_id: str, priority: Priority, reply: Reply,
                     msg: Inbound, now: int, *, held: bool = False, coalesce: bool = False) -> None:  # fmt: skip
        in_thread = chat_id == msg.chat_id and msg.is_group
        base: dict[str, Any] = {"thread": msg.thread_id if in_thread else None}
        blob: bytes | None = None
        if reply.image is not None:
            pieces, blob = [{**base, "kind": "photo", "text": reply.text[:1024]}], reply.image
        elif reply.document is not None:
            name, blob = reply.document
            pieces = [{**base, "kind": "document", "text": reply.text[:1024], "filename": name}]
        else:
            texts = split_text(reply.text) if not reply.mention else [reply.text[:3900]]
            pieces = [{**base, "kind": "text", "text": t} for t in texts]
            pieces[-1]["buttons"] = [(b.label, b.data) for b in reply.buttons]
            if reply.ask_contact is not None:
                pieces[-1]["buttons"] = [(reply.ask_contact, SHARE_CONTACT)]
            elif reply.close_keyboard:
                pieces[-1]["buttons"] = [("", CLOSE_KEYBOARD)]
            if in_thread and reply.quote and msg.message_id:
                pieces[0]["quote"] = msg.message_id
            if reply.mention is not None:
                pieces[0]["mention"] = {"id": reply.mention.external_id, "name": reply.mention.display_name}
            if in_thread:
                for piece in pieces:
                    piece["who"] = {"id": msg.sender.external_id, "name": msg.sender.display_name}
        for piece in pieces:
            can_merge = coalesce and piece["kind"] == "text" and not piece.get("buttons") and len(pieces) == 1
            piece["coalesce"] = can_merge
            row = await repos.outbound.add(CHANNEL, chat_id, int(priority), json.dumps(piece, ensure_ascii=False),
                                           blob, now, held=held)  # fmt: skip
            if not held:
                jobs.append(self._job_of(row, chat_id, int(priority), piece, blob))

    def _job_of(self, row_id: int, chat_id: str, priority: int, payload: dict[str, Any], blob: bytes | None) -> Job:
        return Job(chat_id, Priority(priority), payload, blob=blob, coalesce=bool(payload.get("coalesce")),
                   row_ids=(row_id,), on_result=self._settle)  # fmt: skip

    async def _settle(self, job: Job, result: Delivered) -> None:
        """A durable reply is done (sent, or refused for good): its row goes in the next batch delete."""
        self._settled.extend(job.row_ids)

    async def _flush_settled(self) -> None:
        while True:
            await asyncio.sleep(0.2)
            await self._write_settled()

    async def _write_settled(self) -> None:
        if not self._settled:
            return
        ids, self._settled = self._settled, []
        try:
            async with self.deps.db.transaction() as repos:
                await repos.outbound.done(ids)
        except Exception as exc:
            log.warning("could not record %d sent replies yet: %s", len(ids), exc)
            self._settled.extend(ids)

    async def _resume_outbound(self) -> None:
        async with self.deps.db.read() as repos:
            waiting = await repos.outbound.waiting(CHANNEL)
            boards = await repos.boards.days_with_board(CHANNEL, self._today())
        for item in waiting:
            self.sender.submit(self._job_of(item.id, item.chat_id, item.priority, json.loads(item.payload), item.blob))
        if waiting:
            log.info("resuming %d replies not sent before the last stop", len(waiting))
        for chat_id in boards:  # check-ins booked just before a stop may not be on the board yet
            self.touch_board(chat_id)

    # --- the check-in board ------------------------------------------------------------------------
    def _today(self) -> str:
        return self.deps.calendar.business_day(self.deps.now()).isoformat()

    def touch_board(self, chat_id: str, thread: int | None = None) -> None:
        """The board of this group changed: post it (first check-in of the day, in the topic it came from)
        or edit it, in the group's turn; one edit shows every check-in since the last."""
        day = self._today()
        drawn: list[tuple[str, int]] = []

        async def render() -> dict[str, Any] | None:
            text, buttons, count = await render_board(
                self.deps, CHANNEL, chat_id, day, self._board_counts.get((chat_id, day))
            )
            async with self.deps.db.read() as repos:
                message_id = await repos.boards.message_id(CHANNEL, chat_id, day)
            if message_id is not None and self._board_texts.get((chat_id, day)) == text:
                return None  # already shows this
            drawn[:] = [(text, count)]
            return {"kind": "board", "text": text, "message_id": message_id, "thread": thread,
                    "buttons": [(b.label, b.data) for b in buttons]}  # fmt: skip

        async def posted(job: Job, result: Delivered) -> None:
            if result.outcome is Outcome.SENT and drawn:
                self._board_texts[(chat_id, day)], self._board_counts[(chat_id, day)] = drawn[0]
            if result.outcome is not Outcome.SENT or result.message_id is None:
                if result.outcome is Outcome.FAILED and "not found" in result.error:
                    async with self.deps.db.transaction() as repos:  # deleted by an admin: post a new one
                        await repos.conn.execute(
                            "DELETE FROM checkin_boards WHERE channel = ? AND chat_id = ? AND day = ?",
                            (CHANNEL, chat_id, day),
                        )
                return
            async with self.deps.db.transaction() as repos:
                known = await repos.boards.message_id(CHANNEL, chat_id, day)
                if known != result.message_id:
                    await repos.boards.posted(CHANNEL, chat_id, day, result.message_id)
            if known != result.message_id and self.settings.checkin.board.pin:
                self.sender.submit(Job(chat_id, Priority.GROUP, {"kind": "pin", "message_id": result.message_id}))

        self.sender.submit(Job(chat_id, Priority.GROUP, live_key=f"board:{day}", render=render, on_result=posted,
                               min_interval=self.transport.board_interval, leads=True))  # fmt: skip

    # --- storage faults ----------------------------------------------------------------------------
    def failed(self, exc: BaseException) -> None:
        """Storage failed (a full disk): tell staff once, until it works again."""
        log.error("storage fault: %s", exc)
        if not self._storage_failing:
            self._storage_failing = True
            self._tell_staff(self.deps.texts.t("common.storage_fault", error=str(exc)[:200]))

    def ok(self) -> None:
        if self._storage_failing:
            self._storage_failing = False
            log.warning("storage works again")
            self._tell_staff(self.deps.texts.t("common.storage_recovered"))

    def _tell_staff(self, text: str) -> None:
        staff = self.settings.staff
        targets = [str(staff.telegram_chat)] if staff.telegram_chat else [str(i) for i in staff.telegram]
        for target in targets:  # straight to the sender: the database cannot take it
            self.sender.submit(Job(target, Priority.STAFF, {"kind": "text", "text": text}))

    def store_failed(self, updates: list[dict[str, Any]], exc: BaseException) -> None:
        self.failed(exc)
        for raw in updates:
            try:
                update = Update.de_json(raw, self.application.bot)
            except Exception:
                continue
            msg = to_inbound(update, self.settings.staff.telegram_chat) if update is not None else None
            if msg is not None and update is not None:
                self._apologise(msg.key, msg, update, [Reply(self.deps.texts.t("common.apology"))])

    def _apologise(self, key: str, msg: Inbound, update: Update, replies: list[Reply]) -> None:
        """Say sorry once per update while storage fails (from memory: nothing can be written)."""
        if key in self._apologised:
            return
        self._apologised[key] = True
        text = replies[0].text if replies else self.deps.texts.t("common.apology")
        if update.callback_query is not None:
            payload = {"kind": "callback", "query_id": update.callback_query.id, "text": text[:200]}
            self.sender.submit(Job(CALLBACK_SCOPE, Priority.ANSWER, payload))
            return
        if update.message is None:
            return
        who = {"id": msg.sender.external_id, "name": msg.sender.display_name}
        self.sender.submit(Job(msg.chat_id, Priority.ANSWER if not msg.is_group else Priority.GROUP,
                               {"kind": "text", "text": text, "who": who, "thread": msg.thread_id},
                               coalesce=msg.is_group))  # fmt: skip
