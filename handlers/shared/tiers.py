"""VIP tier texts: the member's tier, the way to the next one, and the congratulation on crossing."""

from __future__ import annotations

from handlers.core.deps import Deps
from handlers.core.messages import Reply


def tier_up_replies(deps: Deps, name: str, earned_before: int, earned_after: int) -> list[Reply]:
    """A congratulation when lifetime points cross into a higher tier, else nothing."""
    before = deps.rules.tier_for(earned_before)
    after = deps.rules.tier_for(earned_after)
    if after.min_points <= before.min_points:
        return []
    return [Reply(deps.texts.t("tier.up", name=name, tier=deps.tier_name(after)), quote=False)]


def next_tier_line(deps: Deps, earned: int) -> str:
    upcoming = deps.rules.next_tier(earned)
    if upcoming is None:
        return deps.texts.t("points.top_tier")
    missing = upcoming.min_points - earned
    return deps.texts.n("points.to_next", missing, tier=deps.tier_name(upcoming), missing=missing)
