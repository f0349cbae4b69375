"""Loyalty rules (等级): /tiers for members, points expiry and the yearly tier review (both off by default).

This package's `FEATURE` declares its command and its two daily jobs to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.jobs import Job
from handlers.loyalty import expiry, review, tiers

FEATURE = Feature(
    "loyalty",
    commands=(Command("tiers", tiers.tiers, "tiers.summary", keywords=("等级", "会员等级")),),
    jobs=(
        Job("expire_points", expiry.run_expiry, expiry.schedule),
        Job("tier_review", review.run_review, review.schedule),
    ),
)
