"""What handlers need from the runtime, as protocols: the channel a message came through, the outbox that
delivers pushes and the planner that wakes the bot when an announcement falls due. `bot/` implements them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from handlers.core.messages import Document, Inbound
from handlers.core.roles import Role


class Outbox(Protocol):
    def channels(self) -> frozenset[str]:
        """The channels that can deliver pushes right now (their recipients get queued)."""
        ...

    def staff_channels(self) -> frozenset[str]:
        """The channels that have a staff chat to tell about late or skipped pushes."""
        ...

    def wake(self) -> None:
        """New deliveries were queued; start sending."""
        ...

    def delete_posts(self, posts: Sequence[tuple[int, str, str, str]], now: int) -> int:
        """Delete sent group posts, each (delivery id, channel, chat id, message id) as storage lists them, once
        the running transaction has committed, where the channel can; returns how many are to be deleted."""
        ...


class Planner(Protocol):
    def plan(self, announcement_id: int, due_at: datetime) -> None:
        """Wake up at `due_at` to send the announcement (idempotent per id)."""
        ...

    def unplan(self, announcement_id: int) -> None: ...


class RightsUnknown(Exception):
    """The platform could not tell the sender's staff role or whether they are in a VIP group (a failed API call):
    the command is answered with the apology, never guessed either way."""


class DocumentTooLarge(Exception):
    """A file over the size the bot reads (`fetch_document`)."""


class ChannelPort(Protocol):
    """What the dispatcher needs to know from the channel an Inbound came through. Rights come from the
    configuration only: staff listed by id with their role, admins of the VIP groups the shop listed when the
    configuration gives them a role, and members of those groups; owning or administering any other chat gives
    none."""

    @property
    def bot_username(self) -> str | None: ...

    def is_vip_chat(self, msg: Inbound) -> bool:
        """True for a private chat or a configured VIP group; the bot serves no other group."""
        ...

    async def role_of(self, msg: Inbound) -> Role | None:
        """The sender's staff role: the one the configuration lists them with, else (where the configuration
        gives group admins a role) that role for an admin of a configured VIP group (of this group when the
        message comes from one); None for a member. Raises (e.g. RightsUnknown) when the platform cannot be
        asked."""
        ...

    async def is_group_member(self, msg: Inbound) -> bool:
        """True when the sender is in one of the configured VIP groups (asked of the platform, cached
        briefly). Raises (e.g. RightsUnknown) when the platform cannot be asked."""
        ...

    async def fetch_document(self, document: Document) -> bytes:
        """The bytes of a file someone sent (`Inbound.document`). Raises DocumentTooLarge for a file over the
        channel's limit, and another exception when the platform cannot give it."""
        ...


class FaultReporter(Protocol):
    """Told when storage fails and when it works again (to tell staff once, not per update)."""

    def failed(self, exc: BaseException) -> None: ...

    def ok(self) -> None: ...
