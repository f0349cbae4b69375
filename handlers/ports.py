"""What handlers need from the runtime, as protocols: the outbox that delivers pushes and the planner
that wakes the bot when an announcement falls due. `bot/` implements both.
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


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
