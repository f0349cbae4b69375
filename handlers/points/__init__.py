"""Points (积分): the member's balance and history, and staff bookings (/award, /deduct, /purchase).

This package's `FEATURE` declares its commands to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.points import bookings, commands

FEATURE = Feature(
    "points",
    commands=(
        Command("points", commands.points, "points.summary", aliases=("balance",), keywords=("积分", "我的积分")),
        Command("award", bookings.award, "award.summary", staff=True),
        Command("deduct", bookings.deduct, "deduct.summary", staff=True),
        Command("purchase", bookings.purchase, "purchase.summary", staff=True),
    ),
)
