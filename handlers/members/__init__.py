"""Membership: /start, the profile (/me) and the birthday.

This package's `FEATURE` declares its commands to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.members import commands

FEATURE = Feature(
    "members",
    commands=(
        Command("me", commands.me, "me.summary", aliases=("profile",), keywords=("我的",)),
        Command("birthday", commands.birthday, "birthday.summary", keywords=("生日",)),
    ),
)
