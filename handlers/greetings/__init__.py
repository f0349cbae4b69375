"""Holiday and birthday greetings (节日问候, 生日祝福) and their calendar.

This package's `FEATURE` declares its commands and announcement kinds to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.jobs import At, Job
from handlers.core.roles import Role
from handlers.greetings import commands

FEATURE = Feature(
    "greetings",
    commands=(
        Command("greetings", commands.greetings, "greetings.summary", keywords=("节日问候",), role=Role.MANAGER),
    ),
    jobs=(
        Job("plan_greetings", commands.plan_greetings, lambda rules: At({"hour": 0, "minute": 5})),
        Job("birthdays", commands.send_birthdays, lambda rules: At({"hour": rules.birthdays.hour, "minute": 1})),
    ),
    due_rules=commands.DUE_RULES,
)
