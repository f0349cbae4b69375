"""/void: staff take back a purchase or an award recorded by mistake.

Nothing is deleted: a voided purchase stays marked (`voided_at`) and no longer counts for statistics and
segments; its points, and those of a referral reward its being a first purchase triggered, are booked back by
reversing ledger entries (reason 'void') that also lower lifetime points, so the tier follows. Each reversal
has its own idempotency key, so voiding twice books once.

Points already spent cannot be taken back: the balance may never go below zero (the ledger's CHECK). A void
that would need more than a member has is refused, naming the shortfall, and books nothing; staff settle the
spent points with the member first (e.g. take back the redemption) and void again.
"""

from __future__ import annotations

from dataclasses import dataclass

from handlers.core.command import Refusal, required_id
from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.parsing import yuan_text
from handlers.core.subcommands import Subcommands
from handlers.points.bookings import booking_notice, tell_member
from handlers.shared.broadcast import send_personal
from handlers.shared.tiers import tier_points_of
from storage.ledger import Entry, InsufficientPoints
from storage.members import Member
from storage.repos import Repos

_REFERRAL_VOIDED = "voided: the first purchase was voided"
"""The outcome stored on a referral whose first purchase was voided (staff-facing, like the merge reasons)."""


@dataclass(frozen=True, slots=True)
class _TakeBack:
    """One reversing entry to book: on whom, of which entry, under which key."""

    member: Member
    entry: Entry
    key: str


def _shortfall(deps: Deps, backs: list[_TakeBack]) -> None:
    """Refuse the void when a member has less than it takes back from them (all their reversals together)."""
    needed: dict[int, int] = {}
    for back in backs:
        needed[back.member.id] = needed.get(back.member.id, 0) + back.entry.delta
    for back in backs:
        need = needed.pop(back.member.id, 0)
        if need > back.member.balance:
            raise Refusal(
                Reply(
                    deps.texts.n(
                        "void.shortfall",
                        need - back.member.balance,
                        name=back.member.display_name,
                        balance=back.member.balance,
                        points=need,
                    )
                )
            )


async def _book(repos: Repos, deps: Deps, req: Request, back: _TakeBack, note: str) -> tuple[bool, int, int]:
    """Book one reversal; (booked now, balance after, lifetime points after)."""
    booking = await repos.ledger.append(
        back.member.id,
        -back.entry.delta,
        "void",
        back.key,
        deps.now_ts(),
        note=note,
        ref=f"ledger:{back.entry.id}",
        earned_delta=-back.entry.earned_delta,
        actor_id=req.member_id,
    )
    return booking.booked, booking.balance, booking.earned


async def _void_purchase(req: Request, deps: Deps, rest: str) -> list[Reply]:
    texts = deps.texts
    purchase_id = required_id(deps, rest, "void")
    try:
        async with deps.db.transaction() as repos:
            purchase = await repos.purchases.get(purchase_id)
            if purchase is None:
                return [Reply(texts.t("void.no_purchase", id=purchase_id))]
            if purchase.voided_at is not None:
                return [Reply(texts.t("void.already", what=texts.t("void.purchase_name", id=purchase_id)))]
            buyer = await repos.members.get(purchase.member_id)
            assert buyer is not None
            backs: list[_TakeBack] = []
            points = await repos.ledger.entry_by_key(f"purchase:{purchase_id}")
            if points is not None:
                backs.append(_TakeBack(buyer, points, f"void:purchase:{purchase_id}"))
            referral = await repos.referrals.for_purchase(purchase_id)
            referrer: Member | None = None
            if referral is not None:
                referrer = await repos.members.get(referral.referrer_id)
                assert referrer is not None
                for side, member in (("referred", buyer), ("referrer", referrer)):
                    reward = await repos.ledger.entry_by_key(f"referral:{referral.id}:{side}")
                    if reward is not None:
                        backs.append(_TakeBack(member, reward, f"void:referral:{referral.id}:{side}"))
            _shortfall(deps, backs)
            if not await repos.purchases.void(purchase_id, deps.now_ts(), req.member_id):
                return [Reply(texts.t("void.already", what=texts.t("void.purchase_name", id=purchase_id)))]
            amount = yuan_text(purchase.amount_fen)
            note = texts.t("void.note_purchase", id=purchase_id)
            taken = {buyer.id: 0}
            after = {buyer.id: (buyer.balance, buyer.earned)}
            for back in backs:
                booked, balance, earned = await _book(repos, deps, req, back, note)
                if booked:
                    taken[back.member.id] = taken.get(back.member.id, 0) + back.entry.delta
                after[back.member.id] = (balance, earned)
            balance, earned = after[buyer.id]
            notice = booking_notice(
                deps,
                "void_purchase",
                taken[buyer.id],
                buyer.earned,
                earned,
                amount=amount,
                balance=balance,
                discount=buyer.discount,
            )
            told = await tell_member(repos, deps, req, buyer, notice)
            replies = [
                Reply(
                    texts.n(
                        "void.purchase_done",
                        taken[buyer.id],
                        id=purchase_id,
                        name=buyer.display_name,
                        amount=amount,
                        balance=balance,
                        tier=deps.tier_name(deps.rules.tier_for(tier_points_of(deps, earned, buyer.discount))),
                    )
                )
            ]
            if referral is not None and referrer is not None:
                await repos.referrals.void(referral.id, deps.now_ts(), _REFERRAL_VOIDED)
                replies.append(
                    Reply(
                        texts.n(
                            "void.referral_done",
                            taken.get(referrer.id, 0),
                            referrer=referrer.display_name,
                            name=buyer.display_name,
                        )
                    )
                )
                if taken.get(referrer.id):
                    text = texts.n(
                        "void.referral_notice",
                        taken[referrer.id],
                        name=buyer.display_name,
                        balance=after[referrer.id][0],
                    )
                    told = bool(await send_personal(repos, deps, "points", text, [(referrer.id, text)])) or told
    except InsufficientPoints:  # spent in the meantime: nothing was booked
        return [Reply(texts.t("void.spent_meanwhile"))]
    if told:
        deps.outbox.wake()
    return replies


async def _void_award(req: Request, deps: Deps, rest: str) -> list[Reply]:
    texts = deps.texts
    entry_id = required_id(deps, rest, "void")
    try:
        async with deps.db.transaction() as repos:
            entry = await repos.ledger.entry(entry_id)
            if entry is None or entry.reason != "award":
                return [Reply(texts.t("void.no_award", id=entry_id))]
            member = await repos.members.get(entry.member_id)
            assert member is not None
            back = _TakeBack(member, entry, f"void:ledger:{entry_id}")
            what = texts.t("void.award_name", id=entry_id)
            if await repos.ledger.id_for(back.key) is not None:
                return [Reply(texts.t("void.already", what=what))]
            _shortfall(deps, [back])
            booked, balance, earned = await _book(repos, deps, req, back, texts.t("void.note_award", id=entry_id))
            if not booked:
                return [Reply(texts.t("void.already", what=what))]
            note = entry.note
            notice = booking_notice(deps, "void_award", entry.delta, member.earned, earned, note, balance=balance,
                                    discount=member.discount)  # fmt: skip
            told = await tell_member(repos, deps, req, member, notice)
    except InsufficientPoints:
        return [Reply(texts.t("void.spent_meanwhile"))]
    if told:
        deps.outbox.wake()
    tier = deps.tier_name(deps.rules.tier_for(tier_points_of(deps, earned, member.discount)))
    return [
        Reply(
            texts.n("void.award_done", entry.delta, id=entry_id, name=member.display_name, balance=balance, tier=tier)
        )
    ]


void = Subcommands(
    "void",
    {"purchase": _void_purchase, "消费": _void_purchase, "award": _void_award, "奖励": _void_award},
)
"""/void purchase <purchase no.>: take back a purchase and all it earned; /void award <entry no.>: an award."""
