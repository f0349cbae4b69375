"""Routes one Inbound to its command: parsing, group and staff checks, membership, de-duplication,
and the safety net that turns a crash in a handler into a logged apology.

Rights are checked here, in one place, before the update's transaction: the sender's staff role (for every
command, so member commands can show staff extras), whether it covers the role the command (or its sub-command)
needs, and whether the sender of a members-only command is in a VIP group. Every command that needs a role is
written to the audit log (handlers.core.auditing) in the update's transaction, refused attempts too. A command's
slow work (its `prepare` step: reading and drawing a chart) runs after those checks and also before the
transaction, so no other write waits while it draws. A group the shop did not list is not served: its owner
hears, at most once in a while, how to list it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from handlers.core.auditing import audit_entry
from handlers.core.command import Command, Preparing, Refusal
from handlers.core.deps import Deps, Request
from handlers.core.messages import Inbound, Reply
from handlers.core.parsing import ParsedCommand, parse_button, parse_command, parse_keyword, split_first
from handlers.core.ports import ChannelPort, FaultReporter
from handlers.core.roles import Role, may
from storage.audit import Outcome
from storage.db.preflight import is_storage_fault
from storage.repos import Repos

log = logging.getLogger(__name__)

NOTICE_EVERY_SECONDS = 3600
"""An unlisted group hears how to list it at most this often, however many commands are sent there."""

ReplySink = Callable[[Repos, int | None, list[Reply], bool], Awaitable[None]]
"""Queues an update's replies (in the update's transaction): (repos, member id, replies, staff command)."""


@dataclass(frozen=True, slots=True)
class Handled:
    replies: list[Reply]
    committed: bool
    """False when storage failed: nothing was booked, the update is not done, the replies are an apology."""
    repeat: bool = False
    member_id: int | None = None
    failed: bool = False
    """A fault of the handler (or of its `prepare` step, or of the routing around it) was logged and answered
    with the apology instead. A storage fault is not one: it leaves `committed` False and this False."""


@dataclass(frozen=True, slots=True)
class _Admission:
    """What the rights checks decided about one command."""

    refusal: list[Reply] | None
    """The answer instead of running the command (staff only, members only, the apology), or None."""
    role: Role | None = None
    """The sender's staff role (None: a member, or the platform could not tell)."""
    needed: Role | None = None
    """The least role the command needs (None: anyone)."""
    in_group: bool | None = None
    """Whether the sender is in a VIP group, when it was asked (members-only commands in private chats)."""
    refused: bool = False
    """The sender's role does not cover the one needed."""
    failed: bool = False
    """The platform could not be asked: nothing is done, a re-delivery is handled again."""

    @property
    def staff_command(self) -> bool:
        """A command that needs a role, admitted (its answer goes before group chatter)."""
        return self.needed is not None and self.refusal is None


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
        self._noticed: dict[tuple[str, str], int] = {}
        """Unlisted group -> when it was last told how to list it."""
        self.faults: FaultReporter | None = None

    @staticmethod
    def _register(table: dict[str, Command], key: str, command: Command) -> None:
        if key in table:
            raise ValueError(f"{key!r} is claimed by both /{table[key].name} and /{command.name}")
        table[key] = command

    def _parse(self, msg: Inbound) -> ParsedCommand | None:
        if msg.button is not None:
            return parse_button(msg.button)
        found = parse_command(msg.text) or parse_keyword(msg.text, self._keywords, self._glued)
        if found is None and not msg.is_group and msg.text.strip() and "fallback" in self._by_name:
            found = ParsedCommand("fallback", msg.text.strip())  # free text in a private chat: a pointer to help
        return found

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
            apology = [Reply(self.deps.texts.t("common.apology"))]
            if not is_storage_fault(exc):
                log.exception("handling %s failed", msg.key)
                return await self._give_up(msg, sink, apology)
            if self.faults is not None:
                self.faults.failed(exc)
            else:
                log.error("storage fault while handling %s: %s", msg.key, exc)
            return Handled(apology, committed=False)
        if self.faults is not None:
            self.faults.ok()
        return handled

    async def _give_up(self, msg: Inbound, sink: ReplySink | None, apology: list[Reply]) -> Handled:
        """A fault outside the handler (a bug in routing or rights): handling it again would fail again, so
        the update is marked done with the apology queued; if even that fails, done without it (the channel
        then apologises from memory, and a re-delivery finds the update done)."""
        try:
            async with self.deps.db.unit() as repos:
                if not await repos.inbox.claim(msg.key, msg.channel, self.deps.now_ts()):
                    return Handled([], committed=True, repeat=True, failed=True)  # given up on before: said sorry
                if sink is not None:
                    await sink(repos, None, apology, False)
            return Handled(apology, committed=True, failed=True)
        except Exception:
            log.exception("answering %s with the apology failed", msg.key)
        try:
            async with self.deps.db.unit() as repos:
                await repos.inbox.claim(msg.key, msg.channel, self.deps.now_ts())
        except Exception:
            log.exception("marking %s done failed", msg.key)
        return Handled(apology, committed=False, failed=True)

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
            wanted = parsed is not None and (addressed or parsed.slash)
            return (self._not_served(msg) if wanted else []), None, None, False
        if parsed is None:
            return [], None, None, msg.is_group
        command = self._by_name.get(parsed.name) if parsed.slash else self._by_keyword.get(parsed.name)
        if command is None:
            return ([Reply(texts.t("common.unknown_command"))] if addressed else []), None, None, False
        return [], command, parsed, True

    def _not_served(self, msg: Inbound) -> list[Reply]:
        """How to list this group, for its owner; once in a while per group, so it cannot be made to spam."""
        now = self.deps.now_ts()
        group = (msg.channel, msg.chat_id)
        last = self._noticed.get(group)
        if last is not None and now - last < NOTICE_EVERY_SECONDS:
            return []
        if len(self._noticed) > 10_000:  # bounded: forgetting costs at most one more notice
            self._noticed = {k: t for k, t in self._noticed.items() if now - t < NOTICE_EVERY_SECONDS}
        self._noticed[group] = now
        log.info("%s group %s is not listed: told how to list it", msg.channel, msg.chat_id)
        return [Reply(self.deps.texts.t("common.not_vip_group", chat_id=msg.chat_id))]

    async def _admit(self, msg: Inbound, port: ChannelPort, command: Command, parsed: ParsedCommand) -> _Admission:
        """The rights checks, asked of the platform before the transaction. A failed question is answered
        with the apology; for a command that needs no rights it only costs the staff extras."""
        texts = self.deps.texts
        sub = split_first(parsed.args)[0].lower()
        needed = command.needed_role(sub)
        try:
            role = await port.role_of(msg)
        except Exception as exc:
            log.warning("cannot tell the role of %s (/%s): %s", msg.sender.external_id, command.name, exc)
            if needed is not None:
                return _Admission([Reply(texts.t("common.apology"))], needed=needed, failed=True)
            role = None
        if needed is not None and not may(role, needed):
            return _Admission([self._role_refusal(role, needed)], role=role, needed=needed, refused=True)
        if msg.is_group or not command.needs_membership(sub):
            return _Admission(None, role=role, needed=needed)
        try:
            in_group = await port.is_group_member(msg)
        except Exception as exc:
            log.warning("cannot tell whether %s is in a VIP group (/%s): %s", msg.sender.external_id,
                        command.name, exc)  # fmt: skip
            return _Admission([Reply(texts.t("common.apology"))], role=role, needed=needed, failed=True)
        if not in_group:
            return _Admission([Reply(texts.t("common.members_only"))], role=role, needed=needed, in_group=False)
        return _Admission(None, role=role, needed=needed, in_group=True)

    def _role_refusal(self, role: Role | None, needed: Role) -> Reply:
        """Which role the command needs: a member hears it is staff's, a staff member also their own role."""
        texts = self.deps.texts
        needed_name = texts.t(f"role.{needed.value}")
        if role is None:
            return Reply(texts.t("common.staff_only", role=needed_name))
        return Reply(texts.t("common.role_needed", role=needed_name, yours=texts.t(f"role.{role.value}")))

    async def _handle(self, msg: Inbound, port: ChannelPort, sink: ReplySink | None) -> Handled:
        replies, routed, parsed, intake = self._route(msg, port)
        command = routed
        admission = _Admission(None)
        if command is not None and parsed is not None:
            admission = await self._admit(msg, port, command, parsed)
            if admission.refusal is not None:
                replies, command = admission.refusal, None
        undone = admission.failed
        faulted = False  # the prepare step or the handler failed: answered with the apology
        prepared: Any = None
        if command is not None and parsed is not None and command.prepare is not None:
            prepared, answer, failed = await self._prepare(command, msg, parsed, admission.role)
            if answer is not None:  # refused (the update is done) or failed (a re-delivery is handled again)
                replies, command, undone, faulted = answer, None, failed, failed
        db = self.deps.db
        async with db.unit() as repos:
            if not await repos.inbox.claim(msg.key, msg.channel, self.deps.now_ts()):
                log.info("dropping repeated update %s", msg.key)
                return Handled([], committed=True, repeat=True)
            member_id, created = None, False
            if intake:  # any message in a VIP group makes a member
                member_id, created = await self._intake(repos, msg)
            outcome: Outcome | None = "refused" if admission.refused else None
            target: int | None = None
            if command is not None and parsed is not None and member_id is not None:
                request = Request(msg, member_id, msg.sender.display_name, parsed.args, admission.role, created,
                                  port, admission.in_group)  # fmt: skip
                replies, outcome = await self._run(command, request, prepared)
                undone, target = outcome == "failed", request.audit.target
                faulted = undone
            if outcome is not None and admission.needed is not None:  # every staff command, refused ones too
                assert routed is not None and parsed is not None and member_id is not None  # it was routed
                await repos.audit.record(audit_entry(
                    msg, routed, parsed.args, member_id=member_id, role=admission.role, target=target,
                    outcome=outcome, at=self.deps.now_ts(),
                ))  # fmt: skip
            if undone:  # a re-delivery of this update is handled again
                await repos.inbox.release(msg.key)
            if sink is not None:
                await sink(repos, member_id, replies, admission.staff_command)
        return Handled(replies, committed=True, member_id=member_id, failed=faulted)

    async def _prepare(
        self, command: Command, msg: Inbound, parsed: ParsedCommand, role: Role | None
    ) -> tuple[Any, list[Reply] | None, bool]:
        """The command's `prepare` step, outside any transaction: (its result, None, False); (None, its answer,
        False) when it refused (`raise Refusal(...)`, as a handler does: the handler does not run); or (None, the
        apology, True) when it failed for a fault of its own (a re-delivery is handled again). A storage fault
        is raised."""
        assert command.prepare is not None
        try:
            return await command.prepare(Preparing(msg, parsed.args, role), self.deps), None, False
        except Refusal as refusal:
            return None, refusal.replies, False
        except Exception as exc:
            if is_storage_fault(exc):
                raise
            log.exception("preparing /%s failed: channel=%s chat=%s key=%s text=%r", command.name, msg.channel,
                          msg.chat_id, msg.key, msg.text[:200])  # fmt: skip
            return None, [Reply(self.deps.texts.t("common.apology"))], True

    async def _run(self, command: Command, request: Request, prepared: Any = None) -> tuple[list[Reply], Outcome]:
        """The handler, in a savepoint ("done"): its `Refusal` undoes its effects and is its answer ("undone");
        its fault undoes them and becomes an apology ("failed")."""
        try:
            async with self.deps.db.transaction():
                if command.prepare is not None:
                    return await command.handler(request, self.deps, prepared=prepared), "done"
                return await command.handler(request, self.deps), "done"
        except Refusal as refusal:  # undone on purpose: an answer, not a fault
            return refusal.replies, "undone"
        except Exception as exc:
            if is_storage_fault(exc):
                raise
            msg = request.msg
            log.exception(
                "handler /%s failed: channel=%s chat=%s member=%s key=%s text=%r",
                command.name, msg.channel, msg.chat_id, request.member_id, msg.key, msg.text[:200],
            )  # fmt: skip
            return [Reply(self.deps.texts.t("common.apology"))], "failed"

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
