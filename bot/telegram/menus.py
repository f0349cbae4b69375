"""The command menus Telegram shows when someone types "/" (setMyCommands), built from the command table the way
/help is, per scope and language:

- private chats (BotCommandScopeAllPrivateChats): every member command;
- group chats (BotCommandScopeAllGroupChats): the member commands that work in a group; `PRIVATE_ONLY` stay out
  (/bind and /phone are refused in groups, /birthday and /forget are about personal data);
- each person in `staff.telegram` (BotCommandScopeChat, their private chat): the staff commands their role may
  use, then the member commands: a cashier sees /purchase and /member, never /void or /announce;
- the admins of each VIP group when `staff.group_admins` gives them a role (BotCommandScopeChatAdministrators):
  that role's staff commands, then the group's;
- the staff chat `staff.telegram_chat`, when it is a group the bot serves (listed in `telegram.groups`; in any
  other group the bot answers no command): the staff commands of the lowest role `staff.telegram` lists (a
  cashier's when it lists none), then the group's. Everyone there sees them; the rights are still checked per
  person on every command.

Each in three languages: "" (everyone whose language has no list of its own: the configured locale, with its
`messages` overrides), "zh" and "en" (Telegram sends the user's two-letter ISO 639-1 code). Only the command's
own name appears, and only when Telegram takes it (1-32 characters of a-z, 0-9 and _): keywords such as 签到 are
no commands, aliases would only crowd the menu. Descriptions are cut to 256 characters, lists to 100 commands.

At start, off the start's path (`MenuRegistrar`, a task that neither delays the start nor the stop): each list
is compared with getMyCommands and set only when it differs, so a restart loop sends no setMyCommands at all.
A scope Telegram refuses (a staff id that never opened the bot: "Chat not found") costs one warning line; a
network failure ends the round with one warning (the next start tries again); the bot runs on either way.

Telegram keeps a chat's menu until it is replaced or deleted: someone taken off `staff.telegram` keeps seeing
the staff menu (but the commands refuse them); `deleteMyCommands` with their chat scope clears it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from telegram import (
    Bot,
    BotCommand,
    BotCommandScope,
    BotCommandScopeAllGroupChats,
    BotCommandScopeAllPrivateChats,
    BotCommandScopeChat,
    BotCommandScopeChatAdministrators,
)
from telegram.error import BadRequest, ChatMigrated, Forbidden, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from bot.app.config import Settings
from handlers.core.command import Command
from handlers.core.i18n import Catalog
from handlers.core.roles import Role, may

log = logging.getLogger(__name__)

COMMAND_NAME = re.compile(r"[a-z0-9_]{1,32}")
"""What Telegram takes as a command in a menu."""
MAX_COMMANDS = 100
MAX_DESCRIPTION = 256
LANGUAGES = {"zh": "zh_CN", "en": "en"}
"""Telegram's language_code -> the catalog it reads."""
PRIVATE_ONLY = frozenset({"bind", "phone", "forget", "birthday"})
"""Member commands kept out of group menus."""
RETRY_AFTER_LIMIT = 120.0
"""A 429 asking to wait longer than this ends the round (the next start tries again)."""

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Menu:
    scope: BotCommandScope
    language_code: str
    """"" for everyone whose language has no list of its own."""
    commands: tuple[BotCommand, ...]
    label: str
    """Names the scope in the log ("staff 500 (cashier)")."""


def catalogs(settings: Settings) -> dict[str, Catalog]:
    """language_code -> catalog: "" and the configured locale's code read it with its overrides."""
    own = Catalog(settings.locale, settings.messages)
    found = {"": own}
    for code, locale in LANGUAGES.items():
        found[code] = own if locale == settings.locale else Catalog(locale)
    return found


def entry(command: Command, texts: Catalog) -> BotCommand | None:
    """The menu line of `command`, or None when Telegram would not take its name."""
    name = command.name.lower()
    if not COMMAND_NAME.fullmatch(name):
        return None
    description = " ".join(texts.t(command.summary_key).split()) or name
    if len(description) > MAX_DESCRIPTION:
        description = description[: MAX_DESCRIPTION - 1] + "…"
    return BotCommand(name, description)


def menu_of(commands: Sequence[Command], texts: Catalog, role: Role | None, *, group: bool) -> tuple[BotCommand, ...]:
    """The staff commands `role` may use (none for None), then the member commands (those fit for a group when
    `group`); /help's order within each part; at most `MAX_COMMANDS`."""
    shown = [c for c in commands if not c.hidden]
    staff = [c for c in shown if c.staff and may(role, c.role)] if role is not None else []
    members = [c for c in shown if not c.staff and not (group and c.name in PRIVATE_ONLY)]
    lines: list[BotCommand] = []
    for command in (*staff, *members):
        line = entry(command, texts)
        if line is not None and all(line.command != seen.command for seen in lines):
            lines.append(line)
    return tuple(lines[:MAX_COMMANDS])


def build_menus(settings: Settings, commands: Sequence[Command], texts: dict[str, Catalog] | None = None) -> list[Menu]:
    """Every (scope, language) list the bot registers, scope by scope."""
    texts = texts if texts is not None else catalogs(settings)
    staff = settings.staff
    groups = set(settings.telegram.groups)
    scopes: list[tuple[BotCommandScope, str, Role | None, bool]] = [
        (BotCommandScopeAllPrivateChats(), "private chats", None, False),
        (BotCommandScopeAllGroupChats(), "group chats", None, True),
    ]
    for user_id, role in sorted(staff.telegram.items()):
        scopes.append((BotCommandScopeChat(user_id), f"staff {user_id} ({role.value})", role, False))
    if staff.group_admins is not None:
        for group in sorted(groups):
            label = f"admins of group {group} ({staff.group_admins.value})"
            scopes.append((BotCommandScopeChatAdministrators(group), label, staff.group_admins, True))
    chat = staff.telegram_chat
    if chat is not None and chat < 0:
        if chat in groups:
            lowest = min(staff.telegram.values(), key=lambda r: r.rank, default=Role.CASHIER)
            scopes.append((BotCommandScopeChat(chat), f"staff chat {chat} ({lowest.value})", lowest, True))
        else:
            log.info("telegram: staff.telegram_chat %s is not in telegram.groups: the bot answers no command there, "
                     "so it gets no command menu", chat)  # fmt: skip
    menus = []
    for scope, label, role, group in scopes:
        for code, catalog in texts.items():
            menus.append(Menu(scope, code, menu_of(commands, catalog, role, group=group), label))
    return menus


def retry_seconds(exc: RetryAfter) -> float:
    with warnings.catch_warnings():  # PTB 22 warns that the int will become a timedelta; both are handled
        warnings.simplefilter("ignore", PTBDeprecationWarning)
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class MenuRegistrar:
    """Brings Telegram's menus in line with `menus`, in a background task (`start`, `stop`, `wait`)."""

    def __init__(self, bot: Bot, menus: Sequence[Menu],
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:  # fmt: skip
        self.bot = bot
        self.menus = list(menus)
        self._sleep = sleep
        self._task: asyncio.Task[None] | None = None
        self.set_count = 0
        """setMyCommands sent (lists that differed from Telegram's)."""
        self.failed: list[str] = []
        """Labels of the scopes Telegram refused."""

    def start(self) -> None:
        self._task = asyncio.create_task(self.run(), name="telegram-menus")

    async def wait(self) -> None:
        """Until the round is over (tests)."""
        if self._task is not None:
            await asyncio.shield(self._task)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def run(self) -> None:
        try:
            for menu in self.menus:
                if menu.label in self.failed:
                    continue  # one warning per scope, not one per language
                try:
                    await self._sync(menu)
                except (BadRequest, Forbidden, ChatMigrated) as exc:
                    self.failed.append(menu.label)
                    log.warning("telegram: command menu for %s not registered: %s", menu.label, exc.message)
        except TelegramError as exc:
            log.warning("telegram: command menus not registered (%s); the next start tries again", exc)
        except Exception as exc:  # an answer PTB cannot read: the menus are a convenience, never a reason to stop
            log.warning("telegram: command menus not registered (%s: %s)", type(exc).__name__, exc)
        if self.set_count:
            log.info("telegram: %d command menus registered", self.set_count)

    async def _sync(self, menu: Menu) -> None:
        language = menu.language_code or None
        current = await self._call(lambda: self.bot.get_my_commands(scope=menu.scope, language_code=language))
        if tuple(current) == menu.commands:
            return
        await self._call(lambda: self.bot.set_my_commands(menu.commands, scope=menu.scope, language_code=language))
        self.set_count += 1

    async def _call(self, call: Callable[[], Awaitable[T]]) -> T:
        """One call, tried once more after a 429's wait (when it is not too long)."""
        try:
            return await call()
        except RetryAfter as exc:
            wait = retry_seconds(exc)
            if wait > RETRY_AFTER_LIMIT:
                raise
            await self._sleep(wait)
            return await call()
