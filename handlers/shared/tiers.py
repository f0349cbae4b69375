"""VIP tiers: the congratulation on crossing into a higher tier, and the points that decide a member's tier."""

from __future__ import annotations

from typing import Protocol

from handlers.core.deps import Deps
from handlers.core.messages import Reply
from handlers.core.rules import Tier
from storage.repos import Repos


class HasTierPoints(Protocol):
    """A member as storage reads one: lifetime points and what the tier review set aside of them."""

    @property
    def earned(self) -> int: ...

    @property
    def discount(self) -> int: ...


def tier_points_of(deps: Deps, earned: int, discount: int = 0) -> int:
    """The points that decide a member's tier: lifetime points (`earned`) less those the yearly tier review set
    aside (`discount`, none before any review); points earned since the last review count in full. With the
    review off (`tier_review.enabled: false`) lifetime points alone decide, as before. The SQL twin, for
    audiences and exports, is `storage.members.tier_points_sql`."""
    if not deps.rules.tier_review.enabled:
        return earned
    return max(0, earned - discount)


def member_tier(deps: Deps, member: HasTierPoints) -> Tier:
    """The tier `member` is in now (by tier points)."""
    return deps.rules.tier_for(tier_points_of(deps, member.earned, member.discount))


def tier_up_replies(deps: Deps, name: str, earned_before: int, earned_after: int, discount: int = 0) -> list[Reply]:
    """A congratulation when a member's tier points (lifetime points less `discount`) cross into a higher
    tier, else nothing."""
    before = deps.rules.tier_for(tier_points_of(deps, earned_before, discount))
    after = deps.rules.tier_for(tier_points_of(deps, earned_after, discount))
    if after.min_points <= before.min_points:
        return []
    return [Reply(deps.texts.t("tier.up", name=name, tier=deps.tier_name(after)), quote=False)]


async def tier_discount(repos: Repos, deps: Deps, member_id: int) -> int:
    """What the tier review set aside of a member's lifetime points, for a booking that did not read the member
    (one look-up, only with the review on; 0 with it off)."""
    if not deps.rules.tier_review.enabled:
        return 0
    return await repos.tier_reviews.discount(member_id)


def next_tier_line(deps: Deps, points: int) -> str:
    """How far `points` (tier points) are from the next tier, or that they are at the top."""
    upcoming = deps.rules.next_tier(points)
    if upcoming is None:
        return deps.texts.t("points.top_tier")
    missing = upcoming.min_points - points
    return deps.texts.n("points.to_next", missing, tier=deps.tier_name(upcoming), missing=missing)
