"""Group buys (团购): open, join, and settle at the deadline.

This package's `FEATURE` declares its commands and announcement kinds to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.roles import Role
from handlers.group_buys import commands

FEATURE = Feature(
    "group_buys",
    commands=(
        Command(
            "groupbuy",
            commands.groupbuy,
            "groupbuy.summary",
            keywords=("团购",),
            sub_roles=dict.fromkeys(commands.STAFF_SUBCOMMANDS, Role.MANAGER),
            member_subcommands=commands.MEMBER_SUBCOMMANDS,
        ),
    ),
    due_rules=commands.DUE_RULES,
)
