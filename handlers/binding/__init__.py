"""One member, two channels: binding identities with a short-lived code, and staff's /unlink.

This package's `FEATURE` declares its commands to the core."""

from handlers.binding import commands
from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.roles import Role

FEATURE = Feature(
    "binding",
    commands=(
        Command("bind", commands.bind, "bind.summary", keywords=("绑定",)),
        Command("unlink", commands.unlink, "unlink.summary", role=Role.MANAGER),
    ),
)
