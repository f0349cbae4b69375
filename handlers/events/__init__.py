"""Events (活动): staff create, edit and cancel them; members sign up and withdraw.

This package's `FEATURE` declares its commands and announcement kinds to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.roles import Role
from handlers.events import commands

FEATURE = Feature(
    "events",
    commands=(
        Command("events", commands.events, "events.summary", keywords=("活动",)),
        Command("join", commands.join, "join.summary", keywords=("报名",), members_only=True),
        Command("leave", commands.leave, "leave.summary", keywords=("取消报名",)),
        Command("event", commands.event, "event.summary", role=Role.MANAGER),
    ),
    due_rules=commands.DUE_RULES,
    subjects=commands.SUBJECTS,
)
