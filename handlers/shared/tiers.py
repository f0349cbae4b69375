"""VIP tiers: the congratulation on crossing into a higher tier, and the points that decide a member's tier."""

from __future__ import annotations

from handlers.core.deps import Deps
from handlers.core.messages import Reply
from storage.repos import Repos


def tier_up_replies(deps: Deps, name: str, earned_before: int, earned_after: int) -> list[Reply]:
    """A congratulation when lifetime points cross into a higher tier, else nothing."""
    before = deps.rules.tier_for(earned_before)
    after = deps.rules.tier_for(earned_after)
    if after.min_points <= before.min_points:
        return []
    return [Reply(deps.texts.t("tier.up", name=name, tier=deps.tier_name(after)), quote=False)]


async def tier_points(repos: Repos, deps: Deps, member_id: int, earned: int) -> int:
    """The points that decide a member's tier: lifetime points (`earned`) less those the yearly tier review set
    aside (none before any review); points earned since the last review count in full. With the review off
    (`tier_review.enabled: false`) lifetime points alone decide, as before."""
    if not deps.rules.tier_review.enabled:
        return earned
    return max(0, earned - await repos.tier_reviews.discount(member_id))


def next_tier_line(deps: Deps, points: int) -> str:
    """How far `points` (tier points) are from the next tier, or that they are at the top."""
    upcoming = deps.rules.next_tier(points)
    if upcoming is None:
        return deps.texts.t("points.top_tier")
    missing = upcoming.min_points - points
    return deps.texts.n("points.to_next", missing, tier=deps.tier_name(upcoming), missing=missing)
