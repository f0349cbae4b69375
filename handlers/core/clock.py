"""The clock is a dependency: every rule about days, streaks and deadlines asks it for the time.

`SystemClock` reads the real time; `FakeClock` lets tests and benchmarks travel in time.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Protocol
from zoneinfo import ZoneInfo


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class FakeClock:
    """A clock that stands still until told to move."""

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            raise ValueError("FakeClock needs an aware datetime")
        self._now = start.astimezone(UTC)

    def now(self) -> datetime:
        return self._now

    def set(self, when: datetime) -> None:
        self._now = when.astimezone(UTC)

    def advance(self, delta: timedelta) -> None:
        self._now += delta


class BusinessCalendar:
    """Maps instants to the shop's business days (local zone, configurable rollover hour)."""

    def __init__(self, zone: ZoneInfo, rollover_hour: int = 0) -> None:
        self.zone = zone
        self.rollover = timedelta(hours=rollover_hour)

    def local(self, instant: datetime) -> datetime:
        return instant.astimezone(self.zone)

    def business_day(self, instant: datetime) -> date:
        return (self.local(instant) - self.rollover).date()

    def day_start(self, day: date) -> datetime:
        """The instant (aware, local zone) at which business day `day` opens."""
        naive = datetime.combine(day, time()) + self.rollover
        return naive.replace(tzinfo=self.zone)
