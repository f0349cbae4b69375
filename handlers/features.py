"""The features this bot runs, in the order /help lists their commands.

A new feature is a package under `handlers/` whose `__init__.py` declares a `Feature`; list it here. The
runtime assembles the command table and the announcement kinds from this list (`handlers.core.table.assemble`);
the core itself never imports a feature.
"""

from __future__ import annotations

from handlers import (
    announcements,
    audit,
    binding,
    checkin,
    customers,
    events,
    feedback,
    greetings,
    group_buys,
    loyalty,
    members,
    points,
    polls,
    referrals,
    rewards,
    sales,
    segments,
    stats,
)
from handlers.core.feature import Feature

FEATURES: tuple[Feature, ...] = (
    referrals.FEATURE,
    checkin.FEATURE,
    points.FEATURE,
    loyalty.FEATURE,
    members.FEATURE,
    events.FEATURE,
    announcements.FEATURE,
    binding.FEATURE,
    sales.FEATURE,
    group_buys.FEATURE,
    polls.FEATURE,
    rewards.FEATURE,
    feedback.FEATURE,
    segments.FEATURE,
    stats.FEATURE,
    customers.FEATURE,
    greetings.FEATURE,
    audit.FEATURE,
)
