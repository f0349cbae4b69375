"""What every handler receives: the dependencies built once at start-up, and the request at hand."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from handlers.core.clock import BusinessCalendar, Clock
from handlers.core.i18n import Catalog
from handlers.core.messages import Inbound, Reply
from handlers.core.ports import ChannelPort, Outbox, Planner
from handlers.core.roles import Role
from handlers.core.rules import Rules, Tier
from storage.db.database import Database

if TYPE_CHECKING:
    from handlers.core.kinds import Kinds


@dataclass(frozen=True, slots=True)
class Deps:
    db: Database
    clock: Clock
    rules: Rules
    calendar: BusinessCalendar
    texts: Catalog
    outbox: Outbox
    planner: Planner
    kinds: Kinds
    """What each announcement kind does when due, as the features declared it."""

    def now(self) -> datetime:
        return self.clock.now()

    def now_ts(self) -> int:
        return int(self.clock.now().timestamp())

    def usage(self, key: str) -> list[Reply]:
        """The usage line of a command, from the catalog's ``<key>.usage``."""
        return [Reply(self.texts.t("common.usage", usage=self.texts.t(f"{key}.usage")))]

    def tier_name(self, tier: Tier) -> str:
        return tier.name or self.texts.t(f"tier.{tier.id}")

    def local_text(self, ts: int, with_time: bool = True) -> str:
        """A unix time as the shop's local date (and time) for display."""
        local = self.calendar.local(datetime.fromtimestamp(ts, UTC))
        if not with_time:
            return local.strftime("%Y-%m-%d")
        return self.texts.t("common.datetime", date=local.strftime("%Y-%m-%d"), time=local.strftime("%H:%M"))


@dataclass(slots=True)
class AuditNote:
    """What a staff command's audit row says beyond the command itself, filled in while it runs."""

    target: int | None = None
    """The member the command acted on (`resolve_target` sets it; a handler that finds its member another way
    sets it itself: ``req.audit.target = member.id``)."""


@dataclass(frozen=True, slots=True)
class Request:
    """One command invocation: the message, who sent it (as a member) and its argument text."""

    msg: Inbound
    member_id: int
    name: str
    """Display name of the sender."""
    args: str
    role: Role | None
    """The sender's staff role (None: a member), from the configuration."""
    new_member: bool = False
    port: ChannelPort | None = None
    """The channel it came through, for questions only the platform can answer (group membership)."""
    in_group: bool | None = None
    """Whether the sender is in a VIP group, when the dispatcher already asked (members-only commands)."""
    audit: AuditNote = field(default_factory=AuditNote, compare=False)
    """Shared by copies of the request (`dataclasses.replace`), so what a handler notes reaches the log."""

    @property
    def is_staff(self) -> bool:
        """Any staff role: staff extras in members' commands (a group buy's participants)."""
        return self.role is not None

    async def in_vip_group(self) -> bool:
        """The membership rule: a message from a VIP group, or a sender the platform finds in one. The
        dispatcher applies it to every members-only command before the handler runs."""
        if self.msg.is_group:
            return True
        if self.in_group is not None:
            return self.in_group
        return self.port is not None and await self.port.is_group_member(self.msg)
