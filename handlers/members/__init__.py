"""Membership: /start, the profile (/me) and the birthday; finding a member at the till (/member, staff);
a member's request to erase their personal data (/forget).

This package's `FEATURE` declares its commands to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.roles import Role
from handlers.members import commands, lookup, privacy

_FORGET_ROLES = {
    **dict.fromkeys(privacy.STAFF_SUBCOMMANDS, Role.MANAGER),
    "confirm": Role.OWNER,  # erasing a member's personal data for good is the owner's decision
    "确认": Role.OWNER,
}

FEATURE = Feature(
    "members",
    commands=(
        Command("me", commands.me, "me.summary", aliases=("profile",), keywords=("我的",)),
        Command("birthday", commands.birthday, "birthday.summary", keywords=("生日",)),
        Command(
            "member", lookup.member, "member.summary", aliases=("lookup",), keywords=("查会员",), role=Role.CASHIER
        ),
        Command("forget", privacy.forget, "forget.summary", sub_roles=_FORGET_ROLES),
        Command("forget_yes", privacy.confirm_request, "forget_yes.summary", keywords=("确认删除",), hidden=True),
    ),
)
