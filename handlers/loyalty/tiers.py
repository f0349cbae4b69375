"""/tiers (等级): every VIP tier with its threshold and privileges, the member's own tier and the way to the next,
and the programme's expiry and review rules when they are on."""

from __future__ import annotations

from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.rules import Tier
from handlers.shared.tiers import next_tier_line, tier_points_of


def privileges(deps: Deps, tier: Tier) -> list[str]:
    """What the tier gives: the configured text (or the catalog's `tiers.privileges_<id>`), then what the
    rules themselves grant it (early access to flash sales, group buys without a deposit)."""
    texts, rules = deps.texts, deps.rules
    lines = []
    configured = tier.privileges_in(texts.locale) or (
        texts.t(f"tiers.privileges_{tier.id}") if texts.has(f"tiers.privileges_{tier.id}") else ""
    )
    lines += [line.strip() for line in configured.splitlines() if line.strip()]
    early = rules.sales.early_access_minutes.get(tier.id, 0)
    if early > 0:
        lines.append(texts.n("tiers.early_access", early))
    if tier.id in rules.groupbuy.no_deposit_tiers:
        lines.append(texts.t("tiers.no_deposit"))
    return lines


def rule_lines(deps: Deps) -> list[str]:
    """The expiry and review rules, as members should know them (none when both are off)."""
    texts, expiry, review = deps.texts, deps.rules.points.expiry, deps.rules.tier_review
    lines = []
    if expiry.enabled:
        if expiry.rule == "end_of_following_year":
            lines.append(texts.t("tiers.expiry_year"))
        else:
            lines.append(texts.n("tiers.expiry_months", expiry.months))
    if review.enabled:
        lines.append(texts.t("tiers.review_rule", date=f"{review.month:02d}-{review.day:02d}"))
    return lines


async def tiers(req: Request, deps: Deps) -> list[Reply]:
    texts = deps.texts
    async with deps.db.read() as repos:
        member = await repos.members.get(req.member_id)
        assert member is not None
        points = tier_points_of(deps, member.earned, member.discount)
    current = deps.rules.tier_for(points)
    lines = [texts.t("tiers.header")]
    for tier in deps.rules.tiers:
        key = "tiers.line_current" if tier.id == current.id else "tiers.line"
        lines.append(texts.n(key, tier.min_points, tier=deps.tier_name(tier)))
        lines += [texts.t("tiers.privilege", text=line) for line in privileges(deps, tier)]
    lines.append(texts.n("tiers.you", points, tier=deps.tier_name(current)))
    lines.append(next_tier_line(deps, points))
    lines += rule_lines(deps)
    return [Reply("\n".join(lines), personal=True)]
