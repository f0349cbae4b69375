"""Referrals (老带新): invite links and codes, attribution, and rewards on the first purchase.

This package's `FEATURE` declares its commands to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.referrals import commands

FEATURE = Feature(
    "referrals",
    commands=(
        Command("start", commands.start_with_referral, "start_cmd.summary", hidden=True),
        Command("invite", commands.invite, "invite.summary", keywords=("邀请",)),
    ),
)
