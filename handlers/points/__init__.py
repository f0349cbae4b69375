"""Points (积分): the member's balance and history, and staff bookings (/award, /deduct, /purchase).

This package's `FEATURE` declares its commands to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.roles import Role
from handlers.points import bookings, commands, voids

FEATURE = Feature(
    "points",
    commands=(
        Command("points", commands.points, "points.summary", aliases=("balance",), keywords=("积分", "我的积分")),
        Command("award", bookings.award, "award.summary", role=Role.MANAGER),
        Command("deduct", bookings.deduct, "deduct.summary", role=Role.MANAGER),
        Command("purchase", bookings.purchase, "purchase.summary", role=Role.CASHIER),
        Command("void", voids.void, "void.summary", role=Role.MANAGER),
    ),
)
