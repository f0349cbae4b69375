"""Flash sales (秒杀): staff create them (the five-day promo rule applies), higher tiers get early access
announced privately, the start is posted in the VIP groups with a claim button, and members claim units.

A claim is a reservation with a code, paid in the shop. The stock is taken by a conditional update and the
claim is unique per (sale, member, unit) in the database, so no concurrency oversells or double-claims.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from handlers.core.command import Refusal, id_and_options, required_id
from handlers.core.deps import Deps, Request
from handlers.core.kinds import (
    AnnouncementKind,
    DueRule,
    SubjectKind,
    SubjectState,
)
from handlers.core.messages import Button, Reply
from handlers.core.parsing import (
    extract_flags,
    option_leftovers,
    parse_amount_fen,
    parse_id,
    parse_int,
    parse_local_datetime,
    parse_options,
    yuan_text,
)
from handlers.core.subcommands import Subcommands
from handlers.shared.broadcast import (
    PROMO_RULES,
    LivePost,
    check_lead_time,
    countdown_text,
    inside_lead_time,
    live_post,
    plan_at,
    plan_leads,
    plan_lines,
    publish,
    send_personal,
    unplan_pending,
)
from handlers.shared.codes import new_code, required_code
from handlers.shared.exports import csv_document
from handlers.shared.tiers import member_tier
from storage.repos import Repos
from storage.sales import Claim, Sale, StockGone

ITEM_LIMIT = 80
STOCK_LIMIT = 100_000
HOLD_LIMIT = 30 * 24 * 60
"""The longest time to pay a claim, in minutes (30 days)."""


async def _sale_state(repos: Repos, sale_id: int) -> SubjectState | None:
    sale = await repos.sales.get(sale_id)
    return None if sale is None else SubjectState(sale.state == "active", sale.starts_at)


SUBJECTS = {SubjectKind.SALE: _sale_state}
"""A cancelled sale's announcements are skipped."""
DUE_RULES = {**PROMO_RULES, AnnouncementKind.SALE_EARLY: DueRule(until_start=True)}
"""Early access after the start is none."""


def claim_button(deps: Deps, sale_id: int) -> Button:
    return Button(deps.texts.t("sale.claim_button"), f"v1:claim:{sale_id}")


def _tier_name(deps: Deps, tier_id: str | None) -> str:
    tier = deps.rules.tier_by_id(tier_id) if tier_id else None
    return deps.tier_name(tier) if tier else ""


def post_text(deps: Deps, sale: Sale) -> str:
    """The group post of a running sale; its stock line is kept current by edits."""
    stock = (
        deps.texts.t("sale.stock_line", remaining=sale.remaining, stock=sale.stock)
        if sale.remaining > 0
        else deps.texts.t("sale.sold_out_line", stock=sale.stock)
    )
    return deps.texts.t("sale.post", id=sale.id, item=sale.item, price=yuan_text(sale.price_fen), stock=stock,
                        limit=sale.per_member, rules=_rules_line(deps, sale))  # fmt: skip


def _rules_line(deps: Deps, sale: Sale) -> str:
    parts = []
    if sale.min_tier:
        parts.append(deps.texts.t("sale.rule_tier", tier=_tier_name(deps, sale.min_tier)))
    if sale.ends_at:
        parts.append(deps.texts.t("sale.rule_end", when=deps.local_text(sale.ends_at)))
    if sale.hold_minutes:
        parts.append(deps.texts.t("sale.rule_hold", minutes=sale.hold_minutes))
    return "".join(f"\n{p}" for p in parts)


def promo_text(deps: Deps, sale: Sale, due: datetime) -> str:
    remaining = datetime.fromtimestamp(sale.starts_at, due.tzinfo) - due
    countdown = countdown_text(deps, remaining)
    return deps.texts.t("sale.promo", id=sale.id, item=sale.item, price=yuan_text(sale.price_fen), stock=sale.stock,
                        when=deps.local_text(sale.starts_at), countdown=countdown,
                        rules=_rules_line(deps, sale))  # fmt: skip


def _early_lines(deps: Deps, sale: Sale) -> list[tuple[str, int, str]]:
    """(tier id, minutes, tier name) of the tiers with early access to this sale, earliest first."""
    floor = deps.rules.tier_by_id(sale.min_tier) if sale.min_tier else None
    found = []
    for tier_id, minutes in deps.rules.sales.early_access_minutes.items():
        tier = deps.rules.tier_by_id(tier_id)
        if tier is None or minutes <= 0 or (floor is not None and tier.min_points < floor.min_points):
            continue
        found.append((tier_id, minutes, deps.tier_name(tier)))
    return sorted(found, key=lambda t: -t[1])


NO_PROMO_WITHIN = timedelta(minutes=5)
"""A sale starting this soon gets no promo at once: its post follows within minutes."""


# --- staff: /sale ----------------------------------------------------------------------------------
async def _add(req: Request, deps: Deps, args: str) -> list[Reply]:
    flags, args = extract_flags(args, {"force": False})
    item, _, opts = args.partition("|")
    item = item.strip()[:ITEM_LIMIT]
    options = parse_options(opts)
    if not item or option_leftovers(opts) or not {"price", "stock", "start"} <= set(options):
        return deps.usage("sale_add")
    price = parse_amount_fen(options["price"])
    stock = parse_int(options["stock"], 0, STOCK_LIMIT) or 0
    start = parse_local_datetime(options["start"], deps.calendar.zone)
    end = parse_local_datetime(options["end"], deps.calendar.zone) if "end" in options else None
    limit_text = options.get("limit", "1")
    limit = parse_int(limit_text, 0, 100) or 0
    hold_text = options.get("hold")
    hold = parse_int(hold_text, 0, HOLD_LIMIT) if hold_text else None
    tier = options.get("tier", "").lower() or None
    problems = [
        price is None,
        not 0 < stock <= STOCK_LIMIT,
        start is None or bool(start[1]),
        "end" in options and end is None,
        not 0 < limit <= 100,
        hold_text is not None and not hold,
        tier is not None and deps.rules.tier_by_id(tier) is None,
    ]
    if any(problems):
        return deps.usage("sale_add")
    assert price is not None and start is not None
    starts = start[0]
    if end is not None and end[0] <= starts:
        return [Reply(deps.texts.t("sale.end_before_start")), *deps.usage("sale_add")]
    force = bool(flags.get("force"))
    check_lead_time(deps, starts, force, "sale_add")
    bent = inside_lead_time(deps, starts)
    async with deps.db.transaction() as repos:
        sale_id = await repos.sales.create(
            item, price, stock, int(starts.timestamp()), int(end[0].timestamp()) if end else None, limit, tier,
            hold, bent, req.member_id, deps.now_ts(),
        )  # fmt: skip
        created = await repos.sales.get(sale_id)
        assert created is not None
        planned, early_plan = await _plan(repos, deps, created, announce_now=True)
    deps.outbox.wake()
    created_line = deps.texts.t(
        "sale.created",
        id=sale_id,
        item=item,
        price=yuan_text(price),
        stock=stock,
        when=deps.local_text(created.starts_at),
    )
    lines = [
        created_line,
        plan_lines(deps, planned),
        *early_plan,
        deps.texts.t("sale.plan_start", when=deps.local_text(created.starts_at)),
    ]
    if bent and any(lead == "now" for lead, _ in planned):  # one message: a busy group's turns are few
        lines.append("\n" + deps.texts.t("sale.rule_bent", days=deps.rules.events.promo_lead_days))
    return [Reply("\n".join(line for line in lines if line))]


async def _plan(
    repos: Repos, deps: Deps, sale: Sale, *, announce_now: bool
) -> tuple[list[tuple[str, int]], list[str]]:
    """Plan a sale's promos, its early-access posts and its start post; returns the promo plan and the staff's
    lines for the early-access posts."""
    sale_id = sale.id
    starts = datetime.fromtimestamp(sale.starts_at, deps.now().tzinfo)
    # A sale starting within minutes is announced by its own post: a promo just before would only add noise.
    soon = starts - deps.now() <= NO_PROMO_WITHIN
    planned = await plan_leads(repos, deps, sale.starts_at, lambda due: promo_text(deps, sale, due), (),
                               announce_now=announce_now and not soon, subject=(SubjectKind.SALE, sale_id))  # fmt: skip
    early_plan = []
    for tier_id, minutes, name in _early_lines(deps, sale):
        due = starts - timedelta(minutes=minutes)
        if due > deps.now():
            text = deps.texts.t("sale.early", tier=name, minutes=minutes, post=post_text(deps, sale))
            await plan_at(repos, deps, AnnouncementKind.SALE_EARLY, "tiers", text, due, tiers=(tier_id,),
                          buttons=(claim_button(deps, sale_id),), subject=(SubjectKind.SALE, sale_id))  # fmt: skip
            early_plan.append(deps.texts.t("sale.plan_early", tier=name, when=deps.local_text(int(due.timestamp()))))
    await plan_at(repos, deps, AnnouncementKind.SALE_START, "groups", post_text(deps, sale), starts,
                  buttons=(claim_button(deps, sale_id),), subject=(SubjectKind.SALE, sale_id))  # fmt: skip
    return planned, early_plan


async def _edit(req: Request, deps: Deps, args: str) -> list[Reply]:
    """/sale edit <id> price=… stock=… start=… end=… [--force]: correct a sale before it opens (its first
    early access, else its start) while nobody has claimed; its promos and posts are planned anew."""
    flags, args = extract_flags(args, {"force": False})
    sale_id, options = id_and_options(deps, args, "sale_edit", {"price", "stock", "start", "end"})
    async with deps.db.read() as repos:
        found = await repos.sales.get(sale_id)
    if found is None or found.state != "active":
        return [Reply(deps.texts.t("sale.unknown", id=sale_id))]
    price = parse_amount_fen(options["price"]) if "price" in options else found.price_fen
    stock = parse_int(options["stock"], 1, STOCK_LIMIT) if "stock" in options else found.stock
    zone = deps.calendar.zone
    start = parse_local_datetime(options["start"], zone) if "start" in options else None
    end = parse_local_datetime(options["end"], zone) if "end" in options else None
    if price is None or stock is None or ("start" in options and (start is None or start[1])) or (
        "end" in options and end is None
    ):
        return deps.usage("sale_edit")
    starts_at = int(start[0].timestamp()) if start else found.starts_at
    ends_at = int(end[0].timestamp()) if end else found.ends_at
    if ends_at is not None and ends_at <= starts_at:
        return [Reply(deps.texts.t("sale.end_before_start")), *deps.usage("sale_edit")]
    if _opens_at(deps, found) <= deps.now_ts():
        return [Reply(deps.texts.t("sale.edit_started", id=sale_id))]
    if starts_at != found.starts_at:
        check_lead_time(deps, datetime.fromtimestamp(starts_at, deps.now().tzinfo), bool(flags.get("force")),
                        "sale_edit")  # fmt: skip
    async with deps.db.transaction() as repos:
        if not await repos.sales.edit(sale_id, price, stock, starts_at, ends_at, deps.now_ts()):
            return [Reply(deps.texts.t("sale.edit_started", id=sale_id))]
        edited = await repos.sales.get(sale_id)
        assert edited is not None
        await unplan_pending(repos, deps, (SubjectKind.SALE, sale_id))
        # A new price or start is worth a promo at once if the leads have passed; a stock change is not.
        news = price != found.price_fen or starts_at != found.starts_at
        planned, early_plan = await _plan(repos, deps, edited, announce_now=news)
    deps.outbox.wake()
    lines = [
        deps.texts.t("sale.edited", id=sale_id, item=edited.item, price=yuan_text(edited.price_fen),
                     stock=edited.stock, when=deps.local_text(edited.starts_at)),
        plan_lines(deps, planned),
        *early_plan,
        deps.texts.t("sale.plan_start", when=deps.local_text(edited.starts_at)),
    ]  # fmt: skip
    return [Reply("\n".join(line for line in lines if line))]


def _opens_at(deps: Deps, sale: Sale) -> int:
    """When the first members may claim: the earliest early access, else the start."""
    earliest = max((minutes for _, minutes, _ in _early_lines(deps, sale)), default=0)
    return sale.starts_at - earliest * 60


async def _sale_with_claims(deps: Deps, args: str) -> tuple[Sale, list[Claim]]:
    """The sale named by `args` and all its claims; refused (with the usage, or "no such sale") when there is
    none."""
    sale_id = parse_id(args)
    if sale_id is None:
        raise Refusal(*deps.usage("sale"))
    async with deps.db.read() as repos:
        found = await repos.sales.get(sale_id)
        claims = await repos.sales.claims(sale_id) if found else []
    if found is None:
        raise Refusal(Reply(deps.texts.t("sale.unknown", id=sale_id)))
    return found, claims


async def _status(req: Request, deps: Deps, args: str) -> list[Reply]:
    found, claims = await _sale_with_claims(deps, args)
    live = [c for c in claims if c.state != "released"]
    lines = [
        deps.texts.t("sale.status", id=found.id, item=found.item, sold=found.sold, remaining=found.remaining,
                     stock=found.stock, claimants=len({c.member_id for c in live}),
                     state=deps.texts.t(f"sale.state_{found.state}"), when=deps.local_text(found.starts_at)),
    ]  # fmt: skip
    for claim_row in live[:30]:
        lines.append(deps.texts.t("sale.claim_line", code=claim_row.code, name=claim_row.display_name,
                                  state=deps.texts.t(f"sale.claim_{claim_row.state}")))  # fmt: skip
    if len(live) > 30:
        lines.append(deps.texts.t("sale.more", count=len(live) - 30))
    return [Reply("\n".join(lines), secret=bool(live))]  # the members' claim codes: never where others read


async def _export(req: Request, deps: Deps, args: str) -> list[Reply]:
    found, claims = await _sale_with_claims(deps, args)
    sale_id = found.id
    rows = [
        [c.code, c.member_id, c.display_name, c.unit, deps.texts.t(f"sale.claim_{c.state}"),
         deps.local_text(c.claimed_at), deps.local_text(c.settled_at) if c.settled_at else ""]
        for c in claims
    ]  # fmt: skip
    columns = ("code", "member_id", "member", "unit", "state", "claimed_at", "settled_at")
    data = csv_document([deps.texts.t(f"sale.column_{name}") for name in columns], rows)
    caption = deps.texts.t("sale.exported", id=sale_id, count=len(claims))
    return [Reply(caption, document=(f"sale-{sale_id}-claims.csv", data), secret=True)]  # it lists every code


async def _cancel(req: Request, deps: Deps, args: str) -> list[Reply]:
    sale_id = required_id(deps, args, "sale")
    now = deps.now_ts()
    async with deps.db.transaction() as repos:
        found = await repos.sales.get(sale_id)
        holders = [c for c in await repos.sales.claims(sale_id) if c.state == "held"] if found else []
        if found is None or not await repos.sales.cancel(sale_id, now):
            return [Reply(deps.texts.t("sale.unknown", id=sale_id))]
        await unplan_pending(repos, deps, (SubjectKind.SALE, sale_id))
        notice = deps.texts.t("sale.cancel_notice", item=found.item)
        await publish(repos, deps, AnnouncementKind.CANCEL, "groups", notice, subject=(SubjectKind.SALE, sale_id),
                      created_by=req.member_id)  # fmt: skip
        bodies = [(c.member_id, deps.texts.t("sale.cancel_personal", item=found.item, code=c.code)) for c in holders]
        await send_personal(repos, deps, AnnouncementKind.CANCEL, notice, bodies, subject=(SubjectKind.SALE, sale_id))
    deps.outbox.wake()
    return [Reply(deps.texts.t("sale.cancelled", id=sale_id, item=found.item, released=len(holders)))]


async def _release(req: Request, deps: Deps, args: str) -> list[Reply]:
    code = required_code(deps, args, "sale")
    async with deps.db.transaction() as repos:
        released = await repos.sales.release(code, deps.now_ts())
    if released is None:
        return [Reply(deps.texts.t("sale.code_unknown", code=code))]
    return [Reply(deps.texts.t("sale.released", code=code, id=released.sale_id))]


async def _paid(req: Request, deps: Deps, args: str) -> list[Reply]:
    code = required_code(deps, args, "sale")
    async with deps.db.transaction() as repos:
        paid = await repos.sales.mark_paid(code, deps.now_ts())
    return [Reply(deps.texts.t("sale.paid" if paid else "sale.code_unknown", code=code))]


sale = Subcommands(
    "sale",
    {"add": _add, "edit": _edit, "status": _status, "export": _export, "cancel": _cancel, "release": _release,
     "paid": _paid},
)  # fmt: skip
"""Staff: /sale add | edit | status | export | cancel | release | paid."""


# --- members: /claim -------------------------------------------------------------------------------
async def claim(req: Request, deps: Deps) -> list[Reply]:
    sale_id = required_id(deps, req.args, "claim")
    texts = deps.texts
    now = deps.now_ts()
    async with deps.db.read() as repos:
        found = await repos.sales.get(sale_id)
        member = await repos.members.get(req.member_id)
        held = await repos.sales.live_claims(sale_id, req.member_id) if found else 0
    assert member is not None
    if found is None or found.state != "active":
        return [Reply(texts.t("sale.unknown", id=sale_id))]
    if not await req.in_vip_group():
        return [Reply(texts.t("claim.not_member"))]
    tier = member_tier(deps, member)
    required = deps.rules.tier_by_id(found.min_tier) if found.min_tier else None
    if required is not None and tier.min_points < required.min_points:
        return [Reply(texts.t("claim.tier_low", tier=deps.tier_name(required)))]
    opens_at = found.starts_at - int(deps.rules.sales.early(tier.id).total_seconds())
    if now < opens_at:
        return [Reply(texts.t("claim.not_started", when=deps.local_text(opens_at)))]
    if found.ends_at is not None and now >= found.ends_at:
        return [Reply(texts.t("claim.ended", item=found.item))]
    if held >= found.per_member:
        return [Reply(texts.t("claim.limit", limit=found.per_member))]
    if found.remaining <= 0:
        return [Reply(texts.t("claim.sold_out", item=found.item))]
    code = new_code("S")
    try:
        async with deps.db.transaction() as repos:
            unit = await repos.sales.take_unit(sale_id, req.member_id, code, now, opens_at)
            reachable = await repos.members.can_message(req.member_id)
    except StockGone:
        return [Reply(texts.t("claim.sold_out", item=found.item))]
    if unit is None:
        return [Reply(texts.t("claim.limit", limit=found.per_member))]
    hold = texts.t("claim.hold", minutes=found.hold_minutes) if found.hold_minutes else ""
    code_text = texts.t("claim.code", item=found.item, price=yuan_text(found.price_fen), code=code, hold=hold)
    if not req.msg.is_group:
        return [Reply(code_text, secret=True)]
    won = texts.t("claim.won_private" if reachable else "claim.won_public", item=found.item)
    return [Reply(won, quote=False), Reply(code_text, secret=True)]


# --- jobs ------------------------------------------------------------------------------------------
async def expire_holds(deps: Deps) -> int:
    """Release unpaid claims past their sale's hold time; tell the members. Returns how many."""
    async with deps.db.transaction() as repos:
        expired = await repos.sales.release_expired(deps.now_ts())
        bodies = [(c.member_id, deps.texts.t("claim.expired", code=c.code)) for c in expired]
        if bodies:
            summary = deps.texts.t("claim.expired", code="-")
            await send_personal(repos, deps, AnnouncementKind.SALE_EXPIRED, summary, bodies)
    if expired:
        deps.outbox.wake()
    return len(expired)


async def live_posts(deps: Deps) -> list[LivePost]:
    """(announcement ids, current text, buttons) of the group posts of running sales."""
    async with deps.db.read() as repos:
        running = await repos.sales.running(deps.now_ts())
        posts = []
        for item in running:
            ids = await repos.announcements.of_subject(AnnouncementKind.SALE_START, SubjectKind.SALE, item.id)
            buttons = (claim_button(deps, item.id),) if item.remaining > 0 else ()
            posts.append(live_post(ids, post_text(deps, item), buttons))
    return posts
