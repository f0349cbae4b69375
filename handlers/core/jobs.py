"""Periodic work a feature asks the scheduler for (expiring holds, planning greetings, the weekly report), stated
without the scheduler library: how often, from the rules, and what to run. `bot.app.scheduler` turns each `Job`
into an APScheduler job in the shop's time zone."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field

from handlers.core.deps import Deps
from handlers.core.rules import Rules


@dataclass(frozen=True, slots=True)
class Every:
    """Every `seconds`, from start-up."""

    seconds: int


@dataclass(frozen=True, slots=True)
class At:
    """At the cron fields given (``hour``, ``minute``, ``day_of_week``, ``day``), local time."""

    fields: Mapping[str, int | str] = field(default_factory=dict)


Schedule = Every | At


@dataclass(frozen=True, slots=True)
class Job:
    id: str
    run: Callable[[Deps], Awaitable[object]]
    schedule: Callable[[Rules], Schedule | None]
    """When it runs, read from the rules; None when the configuration turns it off."""
