"""The Telegram adapter: python-telegram-bot updates in, neutral Inbound to the dispatcher, Replies out.

No business rules live here: only translation, the staff lookup (config list or group admin) and sending.
"""

from __future__ import annotations

import html
import logging
import time
from dataclasses import dataclass, field

from telegram import (
    Bot,
    ChatMember,
    ChatMemberAdministrator,
    ChatMemberOwner,
    InputFile,
    Message,
    ReplyParameters,
    Update,
    User,
)
from telegram.constants import MessageLimit, ParseMode
from telegram.error import TelegramError
from telegram.ext import AIORateLimiter, Application, ApplicationBuilder, ContextTypes, TypeHandler

from bot.config import Settings
from bot.runtime import Runtime
from bot.telegram_buttons import button_rows
from bot.telegram_push import TelegramPusher
from bot.telegram_webhook import TelegramWebhookHandler
from bot.web import WebServer
from handlers.dispatch import Dispatcher
from handlers.messages import Identity, Inbound, Reply

log = logging.getLogger(__name__)

CHANNEL = "telegram"


def identity_of(user: User) -> Identity:
    return Identity(CHANNEL, str(user.id), user.full_name, user.username)


def to_inbound(update: Update) -> Inbound | None:
    """Translate an update; None for what the bot ignores (edits, channel posts, bots, anonymous admins)."""
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
    return Inbound(
        channel=CHANNEL,
        chat_id=str(chat.id),
        sender=identity_of(message.from_user),
        text=message.text or message.caption or "",
        is_group=chat.type in (chat.GROUP, chat.SUPERGROUP),
        key=f"{CHANNEL}:update:{update.update_id}",
        message_id=str(message.message_id),
        thread_id=message.message_thread_id if message.is_topic_message else None,
        reply_to=reply_to,
        addressed_to_bot=to_bot,
    )


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


@dataclass
class _AdminCache:
    ttl: float
    entries: dict[int, tuple[float, frozenset[int]]] = field(default_factory=dict)

    def get(self, chat_id: int) -> frozenset[int] | None:
        hit = self.entries.get(chat_id)
        if hit is None or hit[0] < time.monotonic():
            return None
        return hit[1]

    def put(self, chat_id: int, admins: frozenset[int]) -> None:
        self.entries[chat_id] = (time.monotonic() + self.ttl, admins)


class TelegramChannel:
    """Owns the python-telegram-bot Application and implements the dispatcher's ChannelPort."""

    def __init__(self, settings: Settings, dispatcher: Dispatcher) -> None:
        self.settings = settings
        self.dispatcher = dispatcher
        self._groups = set(settings.telegram.groups)
        self._staff = set(settings.staff.telegram)
        self._admins = _AdminCache(settings.telegram.admin_cache_seconds)
        self._members: dict[int, tuple[float, bool]] = {}
        self.application = self._build_application()
        self.pusher: TelegramPusher | None = None

    def _build_application(self) -> Application:
        tg = self.settings.telegram
        builder = (
            ApplicationBuilder()
            .token(self.settings.telegram_token)
            .base_url(tg.base_url)
            .concurrent_updates(tg.concurrent_updates)
        )
        if tg.rate_limiter:
            builder = builder.rate_limiter(AIORateLimiter(max_retries=3))
        application = builder.build()
        application.add_handler(TypeHandler(Update, self._on_update))
        application.add_error_handler(self._on_error)
        return application

    async def attach(self, runtime: Runtime) -> None:
        """Register the pusher that delivers queued announcements, and the configured VIP groups."""
        self.pusher = TelegramPusher(self.settings)
        await self.pusher.start()
        runtime.outbox.register(self.pusher)
        async with runtime.deps.db.transaction() as repos:
            for group in self.settings.telegram.groups:
                await repos.chats.add(CHANNEL, str(group), runtime.deps.now_ts())

    async def start(self, web: WebServer | None = None) -> None:
        """Connect (getMe), then take updates by webhook on `web` when a URL is configured, else by polling."""
        application = self.application
        await application.initialize()
        await application.start()
        webhook = self.settings.telegram.webhook
        if webhook.url:
            if web is None:
                raise RuntimeError("webhook mode needs the web server")
            secret = webhook.secret_token.get_secret_value()
            web.mount("/telegram", TelegramWebhookHandler, ptb_app=application, secret=secret)
            await application.bot.set_webhook(
                url=webhook.url, secret_token=secret or None, allowed_updates=Update.ALL_TYPES
            )
            log.info("telegram: webhook %s -> /telegram", webhook.url)
        else:
            assert application.updater is not None
            await application.updater.start_polling(allowed_updates=Update.ALL_TYPES)
            log.info("telegram: polling as @%s", application.bot.username)

    @property
    def mode(self) -> str:
        return "webhook" if self.settings.telegram.webhook.url else "polling"

    async def stop(self) -> None:
        application = self.application
        if application.updater is not None and application.updater.running:
            await application.updater.stop()
        if application.running:
            await application.stop()
        await application.shutdown()
        if self.pusher is not None:
            await self.pusher.stop()

    # --- ChannelPort -------------------------------------------------------------------------------
    @property
    def bot_username(self) -> str | None:
        return self.application.bot.username if self.application.bot._bot_user else None

    def is_vip_chat(self, msg: Inbound) -> bool:
        return not msg.is_group or not self._groups or int(msg.chat_id) in self._groups

    async def is_staff(self, msg: Inbound) -> bool:
        user_id = int(msg.sender.external_id)
        if user_id in self._staff:
            return True
        chats = [int(msg.chat_id)] if msg.is_group else sorted(self._groups)
        for chat_id in chats:
            if user_id in await self._admins_of(chat_id):
                return True
        return False

    async def is_group_member(self, msg: Inbound) -> bool:
        """Is the sender in one of the VIP groups? Asked with getChatMember, remembered for a while."""
        if msg.is_group:
            return self.is_vip_chat(msg)
        user_id = int(msg.sender.external_id)
        cached = self._members.get(user_id)
        if cached is not None and cached[0] > time.monotonic():
            return cached[1]
        found = False
        for group in sorted(self._groups):
            try:
                member = await self.application.bot.get_chat_member(group, user_id)
            except TelegramError as exc:
                log.info("cannot check membership of %s in %s: %s", user_id, group, exc)
                continue
            if member.status in (ChatMember.OWNER, ChatMember.ADMINISTRATOR, ChatMember.MEMBER) or (
                member.status == ChatMember.RESTRICTED and getattr(member, "is_member", False)
            ):
                found = True
                break
        self._members[user_id] = (time.monotonic() + self.settings.telegram.member_cache_seconds, found)
        return found

    async def _admins_of(self, chat_id: int) -> frozenset[int]:
        cached = self._admins.get(chat_id)
        if cached is not None:
            return cached
        try:
            members = await self.application.bot.get_chat_administrators(chat_id)
            admins = frozenset(m.user.id for m in members if isinstance(m, ChatMemberAdministrator | ChatMemberOwner))
        except TelegramError as exc:
            log.warning("cannot read the admins of chat %s: %s", chat_id, exc)
            admins = frozenset()
        self._admins.put(chat_id, admins)
        return admins

    # --- updates in, replies out --------------------------------------------------------------------
    async def _on_update(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        if not isinstance(update, Update):
            return
        msg = to_inbound(update)
        if msg is None:
            return
        replies = await self.dispatcher.handle(msg, self)
        if update.poll_answer is not None:
            return  # nothing to say to a poll answer
        if update.callback_query is not None:
            # The first reply shows on the presser's screen; the rest (e.g. a claim code) are sent as usual.
            await self._answer_button(update, replies[:1])
            await self.send(context.bot, msg, replies[1:], None)
            return
        await self.send(context.bot, msg, replies, update.message)

    async def _answer_button(self, update: Update, replies: list[Reply]) -> None:
        """A button press is answered with a short notice on the presser's screen, not a group message."""
        query = update.callback_query
        assert query is not None
        text = replies[0].text if replies else None
        try:
            await query.answer(text=text[:200] if text else None, show_alert=bool(text and len(text) > 60))
        except TelegramError as exc:
            log.warning("answering a button press failed: %s", exc)

    async def send(self, bot: Bot, msg: Inbound, replies: list[Reply], source: Message | None) -> None:
        for reply in replies:
            try:
                await self._send_one(bot, msg, reply, source)
            except TelegramError as exc:
                log.warning("sending to chat %s failed: %s", reply.chat_id or msg.chat_id, exc)

    async def _send_one(self, bot: Bot, msg: Inbound, reply: Reply, source: Message | None) -> None:
        same_chat = reply.chat_id is None and not reply.private
        chat_id: int | str = reply.chat_id or msg.chat_id
        if reply.private:
            chat_id = msg.sender.external_id  # a user's private chat has the user's id
        thread = msg.thread_id if same_chat else None
        markup = button_rows(reply.buttons)
        quote = None
        if same_chat and reply.quote and msg.is_group and source is not None:
            quote = ReplyParameters(message_id=source.message_id, allow_sending_without_reply=True)
        if reply.image is not None:
            await bot.send_photo(
                chat_id=chat_id, photo=reply.image, caption=reply.text[:1024], message_thread_id=thread
            )
            if len(reply.text) > 1024:
                await bot.send_message(chat_id=chat_id, text=reply.text[:4096], message_thread_id=thread)
            return
        if reply.document is not None:
            name, content = reply.document
            await bot.send_document(chat_id=chat_id, document=InputFile(content, filename=name),
                                    caption=reply.text[:1024], message_thread_id=thread)  # fmt: skip
            return
        if reply.mention is not None:
            # Name the member with a link to their account, so the group message notifies them.
            who = reply.mention
            text = f'<a href="tg://user?id={int(who.external_id)}">{html.escape(who.display_name)}</a> '
            text += html.escape(reply.text)
            await bot.send_message(chat_id=chat_id, text=text[:4096], parse_mode=ParseMode.HTML,
                                   message_thread_id=thread, reply_parameters=quote, reply_markup=markup)  # fmt: skip
            return
        pieces = split_text(reply.text)
        for index, piece in enumerate(pieces):
            await bot.send_message(
                chat_id=chat_id,
                text=piece,
                message_thread_id=thread,
                reply_parameters=quote if index == 0 else None,
                reply_markup=markup if index == len(pieces) - 1 else None,
            )

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        log.error("error while handling update %r", getattr(update, "update_id", update), exc_info=context.error)
