"""The yearly tier review (off by default, `tier_review` in config.yaml): a member keeps their tier for another
year when the points they earned in the 12 months before the review day reach it; otherwise they move to the
tier those points reach, and are told so kindly. Lifetime points stay as they are: the review records how many
of them no longer count towards the tier (storage/expiry.py, `TierReviewRepo`), and points earned afterwards
count in full, so a member climbs back as soon as they earn enough. Once per member and year. Turned off again,
lifetime points alone decide the tier (`handlers.shared.tiers.tier_points_of`); the recorded reviews stay."""

from __future__ import annotations

from handlers.core.deps import Deps
from handlers.core.jobs import At, Schedule
from handlers.core.rules import Rules
from handlers.loyalty.expiry import LATE_DAYS, local_midnight, today
from handlers.shared.broadcast import send_personal
from storage.expiry import Reviewed

REVIEW_KIND = "tier_review"
"""The announcement kind of review notices (migration 0021 adds it)."""


def schedule(rules: Rules) -> Schedule | None:
    review = rules.tier_review
    return At({"month": review.month, "day": review.day, "hour": review.hour, "minute": 3}) if review.enabled else None


async def run_review(deps: Deps) -> int:
    """Review every member once this year, on the review day (or within a week after it, when a run was
    missed); returns how many were reviewed now."""
    rules = deps.rules.tier_review
    if not rules.enabled:
        return 0
    day = today(deps)
    review_day = day.replace(month=rules.month, day=rules.day)
    if not 0 <= (day - review_day).days < LATE_DAYS:
        return 0  # a missed run catches up within a week; turned on later in the year, it waits for next year
    end = local_midnight(deps, review_day)
    start = local_midnight(deps, review_day.replace(year=review_day.year - 1))
    tiers = [(tier.min_points, tier.id) for tier in deps.rules.tiers]
    async with deps.db.transaction() as repos:
        reviewed = await repos.tier_reviews.review(day.year, (start, end), tiers, deps.now_ts())
        bodies = [(r.member_id, notice(deps, r)) for r in reviewed]
        if bodies:
            await send_personal(repos, deps, REVIEW_KIND, deps.texts.t("review.record", year=day.year), bodies)
    return len(reviewed)


def notice(deps: Deps, reviewed: Reviewed) -> str:
    """What a reviewed member is told: that their tier is confirmed, or (kindly) which tier they are in now and
    how far the tier they had is."""
    texts, rules = deps.texts, deps.rules
    before = rules.tier_by_id(reviewed.tier_before) or rules.tiers[0]
    after = rules.tier_by_id(reviewed.tier_after) or rules.tiers[0]
    if before.id == after.id:
        return texts.n("review.kept", reviewed.earned_window, tier=deps.tier_name(before))
    missing = before.min_points - reviewed.earned_window
    return texts.n(
        "review.dropped", missing, points=reviewed.earned_window, tier=deps.tier_name(after),
        previous=deps.tier_name(before),
    )  # fmt: skip
