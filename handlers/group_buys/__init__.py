"""Group buys (团购): open, join, and settle at the deadline.

This package's `FEATURE` declares its commands and announcement kinds to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.group_buys import commands

FEATURE = Feature(
    "group_buys",
    commands=(
        Command(
            "groupbuy",
            commands.groupbuy,
            "groupbuy.summary",
            keywords=("团购",),
            staff_subcommands=commands.STAFF_SUBCOMMANDS,
            member_subcommands=commands.MEMBER_SUBCOMMANDS,
        ),
    ),
    due_rules=commands.DUE_RULES,
)
