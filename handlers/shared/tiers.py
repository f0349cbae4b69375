"""VIP tier texts: the congratulation on crossing into a higher tier."""

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
