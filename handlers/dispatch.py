"""Routes one Inbound to its command: parsing, group and staff checks, membership, de-duplication,
and the safety net that turns a crash in a handler into a logged apology.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from handlers.command import Command
from handlers.deps import Deps, Request
from handlers.messages import Inbound, Reply
from handlers.parsing import ParsedCommand, parse_button, parse_command, parse_keyword
from handlers.ports import ChannelPort, FaultReporter
from storage.preflight import is_storage_fault
from storage.repos import Repos

log = logging.getLogger(__name__)

ReplySink = Callable[[Repos, int | None, list[Reply], bool], Awaitable[None]]
"""Queues an update's replies (in the update's transaction): (repos, member id, replies, staff command)."""


@dataclass(frozen=True, slots=True)
class Handled:
    replies: list[Reply]
    committed: bool
    """False when storage failed: nothing was booked, the update is not done, the replies are an apology."""
    repeat: bool = False
    member_id: int | None = None


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
        self.faults: FaultReporter | None = None

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
        return (await self.handle_update(msg, port)).replies

    async def handle_update(self, msg: Inbound, port: ChannelPort, sink: ReplySink | None = None) -> Handled:
        """Answer one inbound message in one transaction: the update's "done" mark, the handler's effects
        and (through `sink`) its queued replies commit together. Never raises: a handler's fault is
        rolled back and answered with an apology; a storage fault leaves the update not done."""
        try:
            handled = await self._handle(msg, port, sink)
        except Exception as exc:
            if not is_storage_fault(exc):
                log.exception("handling %s failed", msg.key)
            elif self.faults is not None:
                self.faults.failed(exc)
            else:
                log.error("storage fault while handling %s: %s", msg.key, exc)
            return Handled([Reply(self.deps.texts.t("common.apology"))], committed=False)
        if self.faults is not None:
            self.faults.ok()
        return handled

    def _route(
        self, msg: Inbound, port: ChannelPort
    ) -> tuple[list[Reply], Command | None, ParsedCommand | None, bool]:
        """What to do without touching the database: an immediate answer or the command to run, and
        whether the message makes its sender a member (any message of ours in a VIP group does)."""
        texts = self.deps.texts
        parsed = self._parse(msg)
        if parsed is not None and parsed.bot is not None and parsed.bot != (port.bot_username or "").lower():
            return [], None, None, False  # /cmd@other_bot: not ours
        addressed = parsed is not None and (
            parsed.bot is not None or not msg.is_group or msg.addressed_to_bot or msg.button is not None
        )
        if not port.is_vip_chat(msg):
            not_vip = [Reply(texts.t("common.not_vip_group", chat_id=msg.chat_id))] if addressed else []
            return not_vip, None, None, False
        if parsed is None:
            return [], None, None, msg.is_group
        command = self._by_name.get(parsed.name) if parsed.slash else self._by_keyword.get(parsed.name)
        if command is None:
            return ([Reply(texts.t("common.unknown_command"))] if addressed else []), None, None, False
        return [], command, parsed, True

    async def _handle(self, msg: Inbound, port: ChannelPort, sink: ReplySink | None) -> Handled:
        replies, command, parsed, intake = self._route(msg, port)
        is_staff = False
        if command is not None and (command.staff or command.name == "help"):
            is_staff = await port.is_staff(msg)  # may ask the platform: before the transaction
            if command.staff and not is_staff:
                replies, command = [Reply(self.deps.texts.t("common.staff_only"))], None
        if command is not None and command.asks_platform:
            if not msg.is_group:
                await port.is_group_member(msg)  # warms the channel's cache before the transaction
            await port.is_staff(msg)  # the same for the admin list (the handler asks again, from the cache)
        db = self.deps.db
        async with db.unit() as repos:
            if not await repos.inbox.claim(msg.key, msg.channel, self.deps.now_ts()):
                log.info("dropping repeated update %s", msg.key)
                return Handled([], committed=True, repeat=True)
            member_id, created = None, False
            if intake:  # any message in a VIP group makes a member
                member_id, created = await self._intake(repos, msg)
            if command is not None and parsed is not None and member_id is not None:
                request = Request(msg, member_id, msg.sender.display_name, parsed.args, is_staff, created, port)
                replies, ok = await self._run(command, request)
                if not ok:  # undone: a re-delivery of this update is handled again
                    await repos.inbox.release(msg.key)
            if sink is not None:
                await sink(repos, member_id, replies, command is not None and command.staff)
        return Handled(replies, committed=True, member_id=member_id)

    async def _run(self, command: Command, request: Request) -> tuple[list[Reply], bool]:
        """The handler, in a savepoint: its fault undoes its effects and becomes an apology (False)."""
        try:
            async with self.deps.db.transaction():
                return await command.handler(request, self.deps), True
        except Exception as exc:
            if is_storage_fault(exc):
                raise
            msg = request.msg
            log.exception(
                "handler /%s failed: channel=%s chat=%s member=%s key=%s text=%r",
                command.name, msg.channel, msg.chat_id, request.member_id, msg.key, msg.text[:200],
            )  # fmt: skip
            return [Reply(self.deps.texts.t("common.apology"))], False

    async def _intake(self, repos: Repos, msg: Inbound) -> tuple[int, bool]:
        """Make sure the sender is a member (and a group the bot serves is known)."""
        now = self.deps.now_ts()
        sender = msg.sender
        group = (msg.channel, msg.chat_id) if msg.is_group else None
        if group is not None and group not in self._known_groups:
            await repos.chats.add(msg.channel, msg.chat_id, now)  # announcements go to groups served
            self._known_groups.add(group)
        return await repos.members.register(
            sender.channel, sender.external_id, sender.display_name, sender.username, now,
            private_chat=not msg.is_group,
        )  # fmt: skip
