"""Flash sales (秒杀): tiered early access, the start post with its claim button, claims.

This package's `FEATURE` declares its commands and announcement kinds to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.jobs import Every, Job
from handlers.core.roles import Role
from handlers.sales import commands

FEATURE = Feature(
    "sales",
    commands=(
        Command("claim", commands.claim, "claim.summary", keywords=("抢", "秒杀"), members_only=True),
        Command("sale", commands.sale, "sale.summary", role=Role.MANAGER),
    ),
    jobs=(Job("expire_sale_holds", commands.expire_holds, lambda rules: Every(60)),),
    due_rules=commands.DUE_RULES,
    subjects=commands.SUBJECTS,
)
