"""Finding a member at the till: ``/member <phone | name | member number | @username>`` (staff).

One member found: their card (profile, balance, tier and the way to the next, last purchases, open codes)
with buttons for the usual next steps. Several (namesakes): a numbered list to pick from. The card shows a
phone number and codes, so it is `secret`: asked in a group, it goes to the asker's private chat.
"""

from __future__ import annotations

from handlers.core.deps import Deps, Request
from handlers.core.messages import Button, Reply
from handlers.core.parsing import parse_id, yuan_text
from handlers.shared.tiers import member_tier, tier_points_of
from storage.members import LOOKUP_LIMIT, Member, MemberMatch, OpenCode
from storage.repos import Repos

_CODE_BUTTONS = 3
"""At most this many code buttons under a card (the purchase button comes first)."""


async def member(req: Request, deps: Deps) -> list[Reply]:
    query = req.args.strip()
    if not query:
        return deps.usage("member")
    async with deps.db.read() as repos:
        found = await _find(repos, query)
        if len(found) == 1:
            return [await _card(repos, deps, found[0])]
    if not found:
        return [Reply(deps.texts.t("member.none", query=query[:40]), secret=True)]
    return [_choices(deps, query, found)]


async def _find(repos: Repos, query: str) -> list[MemberMatch]:
    """By @username, phone (+86, spaces and dashes allowed), member number, else by name."""
    # Imported here: the customers package imports binding, which imports this package (through referrals).
    from handlers.customers.rows import BadCell, parse_phone

    if query.startswith("@"):
        return await repos.members.with_username(query[1:])
    try:
        phone = parse_phone(query)
    except BadCell:
        phone = None
    if phone is not None:
        return await repos.members.by_phone(phone)
    number = parse_id(query)
    if number is not None:
        return await repos.members.numbered(number)
    return await repos.members.named(query[:64])


def _tier_text(deps: Deps, member: Member) -> str:
    points = tier_points_of(deps, member.earned, member.discount)
    tier = deps.tier_name(deps.rules.tier_for(points))
    upcoming = deps.rules.next_tier(points)
    if upcoming is None:
        return deps.texts.t("member.tier_top", tier=tier)
    missing = upcoming.min_points - points
    return deps.texts.n("member.tier_next", missing, tier=tier, next=deps.tier_name(upcoming), missing=missing)


def _phone_tail(deps: Deps, phone: str | None) -> str:
    return deps.texts.t("member.phone_tail", tail=phone[-4:]) if phone else deps.texts.t("member.no_phone")


def _choices(deps: Deps, query: str, found: list[MemberMatch]) -> Reply:
    texts = deps.texts
    shown = found[:LOOKUP_LIMIT]
    lines = [texts.n("member.several", len(shown), query=query[:40])]
    for n, match in enumerate(shown, 1):
        tier = deps.tier_name(member_tier(deps, match))
        lines.append(texts.t("member.choice", n=n, name=match.display_name, id=match.id,
                             phone=_phone_tail(deps, match.phone), tier=tier))  # fmt: skip
    if len(found) > LOOKUP_LIMIT:
        lines.append(texts.t("member.more"))
    lines.append(texts.t("member.pick"))
    buttons = tuple(Button(f"{n}. {m.display_name}"[:40], f"v1:member:{m.id}") for n, m in enumerate(shown[:5], 1))
    return Reply("\n".join(lines), buttons=buttons, secret=True)


async def _card(repos: Repos, deps: Deps, match: MemberMatch) -> Reply:
    texts = deps.texts
    found = await repos.members.get(match.id)
    assert found is not None
    purchases = await repos.members.recent_purchases(match.id)
    codes = await repos.members.open_codes(match.id)
    lines = [
        texts.t(
            "member.card",
            id=found.id,
            name=found.display_name,
            phone=match.phone or texts.t("member.no_phone"),
            birthday=found.birthday or texts.t("member.no_birthday"),
            joined=deps.local_text(found.joined_at, with_time=False),
            balance=found.balance,
            earned=found.earned,
            tier=_tier_text(deps, found),
        )
    ]
    lines.append(texts.t("member.purchases_header") if purchases else texts.t("member.no_purchases"))
    for bought in purchases:
        note = texts.t("member.note", note=bought.note) if bought.note else ""
        lines.append(texts.t("member.purchase", date=deps.local_text(bought.created_at, with_time=False),
                             amount=yuan_text(bought.amount_fen), note=note))  # fmt: skip
    lines.append(texts.t("member.codes_header") if codes else texts.t("member.no_codes"))
    for code in codes:
        lines.append(texts.t(f"member.code_{code.kind}", code=code.code, label=code.label))
    buttons = [Button(texts.t("member.purchase_button"), f"v1:purchase:{found.id}")]
    buttons += [button for code in codes if (button := _code_button(deps, code)) is not None][:_CODE_BUTTONS]
    return Reply("\n".join(lines), buttons=tuple(buttons), secret=True)


def _code_button(deps: Deps, code: OpenCode) -> Button | None:
    """The next step for a code: hand a reward over (/redeemed), mark a sale claim paid (/sale paid)."""
    if code.kind == "redemption":
        return Button(deps.texts.t("member.redeem_button", code=code.code), f"v1:redeemed:{code.code}")
    if code.kind == "sale":
        return Button(deps.texts.t("member.paid_button", code=code.code), f"v1:sale:paid {code.code}")
    return None
