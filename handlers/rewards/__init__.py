"""The points rewards shop (积分兑换): rewards, redemptions and their codes.

This package's `FEATURE` declares its commands to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.roles import Role
from handlers.rewards import commands

FEATURE = Feature(
    "rewards",
    commands=(
        Command("rewards", commands.rewards, "rewards.summary", keywords=("积分商城", "兑换列表")),
        Command("redeem", commands.redeem, "redeem.summary", keywords=("兑换",), members_only=True),
        Command("reward", commands.reward, "reward.summary", role=Role.MANAGER),
        Command("redeemed", commands.redeemed, "redeemed.summary", role=Role.CASHIER),
    ),
)
