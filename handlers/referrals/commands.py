"""Referrals (老带新): /invite gives a member their personal link and code, a new member who arrives through it
(or sends `邀请 CODE` before doing anything else) is attributed to the referrer, and both sides earn points when
the new member's first purchase is recorded. An invite between identities of one member earns nothing: when
a link (handlers.binding) makes inviter and invitee one member, the referral is voided and its points taken back.
"""

from __future__ import annotations

import re
import secrets

from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.subcommands import Subcommands
from handlers.members.commands import start
from handlers.shared.broadcast import send_personal
from handlers.shared.codes import ALPHABET
from handlers.shared.tiers import tier_up_replies
from storage.members import Member
from storage.referrals import MergeReasons, Referral
from storage.repos import Repos

PAYLOAD_PREFIX = "ref_"
"""Deep-link payload `ref_<code>` (Telegram allows A-Z, a-z, 0-9, _ and - in a start payload)."""
CODE_LENGTH = 6
_CODE = re.compile(rf"[{ALPHABET}]{{{CODE_LENGTH}}}")
_STATS_WORDS = frozenset({"stats", "stat", "统计", "记录"})
_STATS_LINES = 10
_CODE_ATTEMPTS = 8


def invite_code(text: str) -> str | None:
    """A code as a member may type or paste it ('ref_7kq2xm', ' 7KQ2XM '), normalised; None if it is none."""
    cleaned = text.strip().replace(" ", "")
    if cleaned.lower().startswith(PAYLOAD_PREFIX):
        cleaned = cleaned[len(PAYLOAD_PREFIX) :]
    cleaned = cleaned.upper()
    return cleaned if _CODE.fullmatch(cleaned) else None


def _new_code() -> str:
    return "".join(secrets.choice(ALPHABET) for _ in range(CODE_LENGTH))


# --- /start with a deep-link payload -------------------------------------------------------------------
async def start_with_referral(req: Request, deps: Deps) -> list[Reply]:
    """/start, plus the attribution of a `ref_<code>` payload to the member who shared it."""
    replies = await start(req, deps)
    if req.args.strip().lower().startswith(PAYLOAD_PREFIX):
        replies += await _attribute(req, deps, req.args)
    return replies


# --- /invite, 邀请 ---------------------------------------------------------------------------------------
async def _show_invite(req: Request, deps: Deps, args: str) -> list[Reply]:
    """/invite: the member's personal link and code."""
    code = None
    async with deps.db.transaction() as repos:
        for _ in range(_CODE_ATTEMPTS):  # a clash with another member's code is rare; draw again
            code = await repos.referrals.claim_code(req.member_id, _new_code(), deps.now_ts())
            if code is not None:
                break
    if code is None:
        raise RuntimeError("could not find a free invite code")
    rules = deps.rules.referrals
    values = {"code": code, "referrer_points": rules.referrer_points, "referred_points": rules.referred_points}
    username = req.port.bot_username if req.port is not None else None
    if username:
        link = f"https://t.me/{username}?start={PAYLOAD_PREFIX}{code}"
        return [Reply(deps.texts.t("invite.link", link=link, **values))]
    return [Reply(deps.texts.t("invite.code_only", **values))]


async def _attribute(req: Request, deps: Deps, text: str) -> list[Reply]:
    """Attribute the sender, if they have not been active yet, to the owner of the code in `text`."""
    texts = deps.texts
    code = invite_code(text)
    if code is None:
        return [Reply(texts.t("referral.unknown_code", code=text.strip()[:20]))]
    async with deps.db.transaction() as repos:
        referrer_id = await repos.referrals.owner_of(code)
        if referrer_id is None:
            return [Reply(texts.t("referral.unknown_code", code=code))]
        if referrer_id == req.member_id:
            return [Reply(texts.t("referral.self"))]
        # Following the WeChat account (or /start) makes the member first: until they are active
        # (storage.members.NO_ACTIVITY) an invite still brings them in.
        if not await repos.referrals.attribute(referrer_id, req.member_id, code, req.msg.channel, deps.now_ts()):
            if await repos.referrals.for_referred(req.member_id) is not None:
                return [Reply(texts.t("referral.already"))]
            return [Reply(texts.t("referral.existing"))]
        referrer = await repos.members.get(referrer_id)
        assert referrer is not None
        notice = texts.t("referral.joined_notice", name=req.name, points=deps.rules.referrals.referrer_points)
        queued = await send_personal(repos, deps, "referral", notice, [(referrer_id, notice)])
    if queued:
        deps.outbox.wake()
    points = deps.rules.referrals.referred_points
    return [Reply(texts.t("referral.attributed", referrer=referrer.display_name, points=points))]


async def _by_code(req: Request, deps: Deps, args: str) -> list[Reply]:
    """邀请 <code>: join by the code someone gave."""
    if invite_code(args) is None:
        return deps.usage("invite")
    return await _attribute(req, deps, args)


async def _stats(req: Request, deps: Deps, args: str) -> list[Reply]:
    """/invite stats: the member's referrals."""
    texts = deps.texts
    async with deps.db.read() as repos:
        stats = await repos.referrals.stats(req.member_id)
        latest = await repos.referrals.by_referrer(req.member_id, _STATS_LINES)
    if stats.joined == 0:
        return [Reply(texts.t("invite.stats_none"))]
    lines = [
        texts.t(
            "invite.stats_header",
            joined=stats.joined,
            purchased=stats.purchased,
            points=stats.points,
            capped=stats.capped,
        )
    ]
    for referral in latest:
        joined = deps.local_text(referral.created_at, with_time=False)
        if referral.rewarded_at is None:
            status = texts.t("invite.status_joined")
        else:
            bought = deps.local_text(referral.rewarded_at, with_time=False)
            if referral.state == "capped":
                status = texts.t("invite.status_capped", date=bought)
            else:
                status = texts.t("invite.status_rewarded", date=bought, points=referral.referrer_points)
        lines.append(texts.t("invite.stats_line", name=referral.referred_name, date=joined, status=status))
    if stats.joined > len(latest):
        lines.append(texts.t("invite.stats_more", count=stats.joined - len(latest)))
    return [Reply("\n".join(lines))]


invite = Subcommands(
    "invite", dict.fromkeys(_STATS_WORDS, _stats), missing=_show_invite, otherwise=_by_code, alone=True
)
"""/invite: the personal link and code; /invite stats (统计): the member's referrals; 邀请 <code>: join by code."""


# --- the reward, inside the /purchase transaction ------------------------------------------------------
async def on_purchase(repos: Repos, deps: Deps, member_id: int, purchase_id: int | None) -> list[Reply]:
    """Reward a referral when the referred member's first purchase is recorded; idempotent.

    Runs inside the caller's transaction, after the purchase row (and its points) are booked. The referred
    member always gets `referred_points`; the referrer gets `referrer_points` unless they already have
    `monthly_cap` rewarded referrals this calendar month (shop's zone), in which case the row says so.
    Returns replies for the staff member who recorded the purchase; the two members are told privately.
    """
    if purchase_id is None:
        return []
    texts = deps.texts
    rules = deps.rules.referrals
    month = deps.calendar.local(deps.now()).strftime("%Y-%m")
    now = deps.now_ts()
    referral = await repos.referrals.settle(
        member_id,
        purchase_id,
        month,
        rules.monthly_cap,
        rules.referrer_points,
        rules.referred_points,
        f"monthly cap of {rules.monthly_cap} rewarded referrals reached for {month}",
        now,
    )
    if referral is None:
        return []  # not referred, or the first purchase was already rewarded
    referrer = await repos.members.get(referral.referrer_id)
    referred = await repos.members.get(referral.referred_id)
    assert referrer is not None and referred is not None
    replies: list[Reply] = []
    referred_balance, referrer_balance = referred.balance, referrer.balance
    if referral.referred_points > 0:
        note = texts.t("referral.note_referred", name=referrer.display_name)
        referred_balance, tier_up = await _book(repos, deps, referral, "referred", referred, note, purchase_id)
        replies += tier_up
    if referral.referrer_points > 0:
        note = texts.t("referral.note_referrer", name=referred.display_name)
        referrer_balance, tier_up = await _book(repos, deps, referral, "referrer", referrer, note, purchase_id)
        replies += tier_up

    names = {"referrer": referrer.display_name, "referred": referred.display_name}
    if referral.state == "capped":
        staff_text = texts.t("referral.capped_staff", cap=rules.monthly_cap, points=referral.referred_points, **names)
        referrer_text = texts.t("referral.capped_referrer", name=referred.display_name, cap=rules.monthly_cap)
    else:
        staff_text = texts.t(
            "referral.rewarded_staff",
            referrer_points=referral.referrer_points,
            referred_points=referral.referred_points,
            **names,
        )
        referrer_text = texts.t(
            "referral.rewarded_referrer",
            name=referred.display_name,
            points=referral.referrer_points,
            balance=referrer_balance,
        )
    bodies = [(referrer.id, referrer_text)]
    if referral.referred_points > 0:
        referred_text = texts.t(
            "referral.rewarded_referred",
            referrer=referrer.display_name,
            points=referral.referred_points,
            balance=referred_balance,
        )
        bodies.append((referred.id, referred_text))
    if await send_personal(repos, deps, "referral", staff_text, bodies):
        deps.outbox.wake()  # the outbox waits for this transaction to commit before it reads the rows
    return [Reply(staff_text, quote=False), *replies]


async def _book(
    repos: Repos,
    deps: Deps,
    referral: Referral,
    side: str,
    member: Member,
    note: str,
    purchase_id: int,
) -> tuple[int, list[Reply]]:
    """Book one side's referral points once (one ledger key per referral and side); returns the member's
    balance afterwards and a congratulation if they reached a higher tier."""
    points = referral.referrer_points if side == "referrer" else referral.referred_points
    booking = await repos.ledger.append(
        member.id, points, "referral", f"referral:{referral.id}:{side}", deps.now_ts(), note=note, ref=str(purchase_id)
    )
    if not booking.booked:
        return booking.balance, []
    return booking.balance, tier_up_replies(
        deps, member.display_name, booking.earned - points, booking.earned, member.discount
    )


# --- two members becoming one, inside the link's transaction -------------------------------------------
_MERGE_REASONS = MergeReasons(
    same_member="voided: inviter and invitee were linked into one member",
    invited_twice="voided: linked with a member who was invited too",
    not_new="voided: linked with a member who had bought before",
)


async def paid_between(repos: Repos, a: int, b: int) -> list[Referral]:
    """Settled referrals between two members, whose points a link of the two takes back."""
    return [r for r in await repos.referrals.between(a, b) if r.state != "joined"]


async def follow_merge(repos: Repos, deps: Deps, source: int, target: int) -> None:
    """Before `source` moves into `target`: referrals follow the member, and one between the two is voided."""
    await repos.referrals.follow_merge(source, target, deps.now_ts(), _MERGE_REASONS)


async def take_back(repos: Repos, deps: Deps, member_id: int, paid: list[Referral]) -> int:
    """After the merge: book back both sides' points of each voided referral on the merged member, once;
    returns the points taken back. Lifetime points (the tier) go back too."""
    note = deps.texts.t("referral.note_withdrawn")
    total = 0
    for referral in paid:
        points = referral.referrer_points + referral.referred_points
        if points:
            await repos.ledger.append(member_id, -points, "referral", f"referral:{referral.id}:void", deps.now_ts(),
                                      note=note, earned_delta=-points)  # fmt: skip
            total += points
    return total
