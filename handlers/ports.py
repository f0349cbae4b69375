"""What handlers need from the runtime, as protocols: the channel a message came through, the outbox that
delivers pushes and the planner that wakes the bot when an announcement falls due. `bot/` implements them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from handlers.messages import Inbound


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


class Planner(Protocol):
    def plan(self, announcement_id: int, due_at: datetime) -> None:
        """Wake up at `due_at` to send the announcement (idempotent per id)."""
        ...

    def unplan(self, announcement_id: int) -> None: ...


class ChannelPort(Protocol):
    """What the dispatcher needs to know from the channel an Inbound came through."""

    @property
    def bot_username(self) -> str | None: ...

    def is_vip_chat(self, msg: Inbound) -> bool:
        """True for a private chat or a configured VIP group."""
        ...

    async def is_staff(self, msg: Inbound) -> bool: ...

    async def is_group_member(self, msg: Inbound) -> bool:
        """True when the sender is in one of the VIP groups (asked of the platform, cached briefly)."""
        ...


class FaultReporter(Protocol):
    """Told when storage fails and when it works again (to tell staff once, not per update)."""

    def failed(self, exc: BaseException) -> None: ...

    def ok(self) -> None: ...
