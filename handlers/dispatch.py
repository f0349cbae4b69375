"""Routes one Inbound to its command: parsing, group and staff checks, membership, de-duplication,
and the safety net that turns a crash in a handler into a logged apology.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from handlers.command import Command
from handlers.deps import Deps, Request
from handlers.messages import Inbound, Reply
from handlers.parsing import ParsedCommand, parse_button, parse_command, parse_keyword
from handlers.ports import ChannelPort

log = logging.getLogger(__name__)


class Dispatcher:
    def __init__(self, deps: Deps, commands: Sequence[Command]) -> None:
        self.deps = deps
        self.commands = list(commands)
        self._by_name: dict[str, Command] = {}
        self._by_keyword: dict[str, Command] = {}
        for command in self.commands:
            for name in (command.name, *command.aliases):
                self._register(self._by_name, name, command)
            for keyword in command.keywords:
                self._register(self._by_keyword, keyword, command)
        self._keywords = set(self._by_keyword)
        self._glued = frozenset(k for c in self.commands if c.glued for k in c.keywords)
        self._known_groups: set[tuple[str, str]] = set()

    @staticmethod
    def _register(table: dict[str, Command], key: str, command: Command) -> None:
        if key in table:
            raise ValueError(f"{key!r} is claimed by both /{table[key].name} and /{command.name}")
        table[key] = command

    def _parse(self, msg: Inbound) -> ParsedCommand | None:
        if msg.button is not None:
            return parse_button(msg.button)
        return parse_command(msg.text) or parse_keyword(msg.text, self._keywords, self._glued)

    async def handle(self, msg: Inbound, port: ChannelPort) -> list[Reply]:
        """Answer one inbound message; never raises for a handler's fault."""
        texts = self.deps.texts
        parsed = self._parse(msg)
        if parsed is not None and parsed.bot is not None and parsed.bot != (port.bot_username or "").lower():
            return []  # /cmd@other_bot: not ours
        addressed = parsed is not None and (
            parsed.bot is not None or not msg.is_group or msg.addressed_to_bot or msg.button is not None
        )

        if not port.is_vip_chat(msg):
            return [Reply(texts.t("common.not_vip_group", chat_id=msg.chat_id))] if addressed else []

        if parsed is None:
            if msg.is_group:  # first interaction in a VIP group makes a member
                await self._intake(msg, None)
            return []

        command = self._by_name.get(parsed.name) if parsed.slash else self._by_keyword.get(parsed.name)
        if command is None:
            return [Reply(texts.t("common.unknown_command"))] if addressed else []

        is_staff = await port.is_staff(msg) if (command.staff or command.name == "help") else False
        if command.staff and not is_staff:
            return [Reply(texts.t("common.staff_only"))]

        intake = await self._intake(msg, msg.key)
        if intake is None:
            log.info("dropping repeated update %s", msg.key)
            return []
        member_id, created = intake
        request = Request(msg, member_id, msg.sender.display_name, parsed.args, is_staff, created, port)
        try:
            return await command.handler(request, self.deps)
        except Exception:
            log.exception(
                "handler /%s failed: channel=%s chat=%s member=%s key=%s text=%r",
                command.name,
                msg.channel,
                msg.chat_id,
                member_id,
                msg.key,
                msg.text[:200],
            )
            async with self.deps.db.transaction() as repos:
                await repos.seen_updates.release(msg.key)
            return [Reply(texts.t("common.apology"))]

    async def _intake(self, msg: Inbound, key: str | None) -> tuple[int, bool] | None:
        """Claim the update key (None for a repeat) and make sure the sender is a member."""
        now = self.deps.now_ts()
        sender = msg.sender
        group = (msg.channel, msg.chat_id) if msg.is_group else None
        async with self.deps.db.transaction() as repos:
            if key is not None and not await repos.seen_updates.claim(key, now):
                return None
            if group is not None and group not in self._known_groups:
                await repos.chats.add(msg.channel, msg.chat_id, now)  # announcements go to groups served
                self._known_groups.add(group)
            return await repos.members.register(
                sender.channel,
                sender.external_id,
                sender.display_name,
                sender.username,
                now,
                private_chat=not msg.is_group,
            )
