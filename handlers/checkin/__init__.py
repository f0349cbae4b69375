"""Daily check-in (签到) and the group's check-in board (签到榜).

This package's `FEATURE` declares its commands to the core."""

from handlers.checkin import commands
from handlers.core.command import Command
from handlers.core.feature import Feature

FEATURE = Feature(
    "checkin",
    commands=(Command("checkin", commands.checkin, "checkin.summary", keywords=("签到", "打卡")),),
)
