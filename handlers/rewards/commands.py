"""The points rewards shop (积分兑换): staff define rewards; members list and redeem them for a code.

A redemption takes the stock (conditional update) and books the points (ledger; the balance CHECK refuses
an overdraw) in one transaction, so it never leaves a negative balance or stock, however many arrive at once.
"""

from __future__ import annotations

import re

from handlers.core.command import Refusal, required_id
from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.parsing import option_leftovers, parse_id, parse_int, parse_options, split_first
from handlers.core.subcommands import Subcommands
from handlers.shared.codes import new_code, required_code
from handlers.shared.tiers import member_tier
from storage.ledger import InsufficientPoints
from storage.rewards import Reward

NAME_LIMIT = 80
CLOSE_FRACTION = 0.3
"""A reward counts as 'close' when the member lacks at most this share of its cost."""


STOCK_LIMIT = 1_000_000
"""The most units a reward may have in stock."""


def _invalid(deps: Deps, field: str) -> Refusal:
    """The refusal of a reward option that does not hold: which one, and the usage."""
    return Refusal(Reply(deps.texts.t("reward.invalid", field=field)), *deps.usage("reward"))


def _reward_fields(deps: Deps, options: dict[str, str]) -> dict[str, object]:
    """Validated reward fields from key=value options (cost, stock, tier); an invalid one is refused."""
    fields: dict[str, object] = {}
    for key, value in options.items():
        if key == "cost":
            cost = parse_int(value, 1, 10_000_000)
            if cost is None:
                raise _invalid(deps, key)
            fields["cost"] = cost
        elif key == "stock":
            if value.lower() in ("none", "unlimited", "无限"):
                fields["stock"] = None
            elif (stock := parse_int(value, 0, STOCK_LIMIT)) is not None:
                fields["stock"] = stock
            else:
                raise _invalid(deps, key)
        elif key == "tier":
            if value.lower() in ("none", "any"):
                fields["min_tier"] = None
            elif deps.rules.tier_by_id(value.lower()) is None:
                raise _invalid(deps, key)
            else:
                fields["min_tier"] = value.lower()
        else:
            raise _invalid(deps, key)
    return fields


_KEY = re.compile(r"(?:^|(?<=\s))([a-z_]+)=")


def _edit_options(text: str) -> dict[str, str] | None:
    """``name=皮具护理套装 stock=5`` as a dict, options in any order; only the name's value may hold spaces
    (it runs to the next option). None when text stands outside the options, an option repeats or is empty,
    or another value holds a space."""
    keys = list(_KEY.finditer(text))
    if not keys or text[: keys[0].start()].strip():
        return None
    options: dict[str, str] = {}
    for key, following in zip(keys, [*keys[1:], None], strict=True):
        value = text[key.end() : following.start() if following else len(text)].strip()
        option = key.group(1)
        if option in options or not value or (option != "name" and len(value.split()) > 1):
            return None
        options[option] = value
    return options


def _describe(deps: Deps, reward: Reward) -> str:
    left = deps.texts.t("rewards.left", left=reward.left) if reward.left is not None else ""
    tier = ""
    if reward.min_tier and (tier_rule := deps.rules.tier_by_id(reward.min_tier)) is not None:
        tier = deps.texts.t("rewards.tier_only", tier=deps.tier_name(tier_rule))
    return deps.texts.t("rewards.item", id=reward.id, name=reward.name, cost=reward.cost, left=left, tier=tier)


async def _add(req: Request, deps: Deps, rest: str) -> list[Reply]:
    """/reward add <name> | cost=<points> [stock=<n>] [tier=<id>]"""
    name, _, opts = rest.partition("|")
    name = name.strip()[:NAME_LIMIT]
    fields = _reward_fields(deps, parse_options(opts))
    if not name or "cost" not in fields or option_leftovers(opts):
        return deps.usage("reward")
    async with deps.db.transaction() as repos:
        reward_id = await repos.rewards.create(
            name,
            int(fields["cost"]),
            fields.get("stock"),
            fields.get("min_tier"),
            deps.now_ts(),  # type: ignore[arg-type]
        )
        created = await repos.rewards.get(reward_id)
    assert created is not None
    return [Reply(deps.texts.t("reward.added", item=_describe(deps, created)))]


async def _edit(req: Request, deps: Deps, rest: str) -> list[Reply]:
    """/reward edit <id> name=… cost=… stock=… tier=…"""
    id_text, opts = split_first(rest)
    reward_id = parse_id(id_text)
    options = _edit_options(opts)
    if reward_id is None or options is None:
        return deps.usage("reward")
    name = options.pop("name", None)
    fields = _reward_fields(deps, options)
    if name is not None:
        fields["name"] = name[:NAME_LIMIT]
    async with deps.db.transaction() as repos:
        changed = await repos.rewards.update(reward_id, **fields)
        updated = await repos.rewards.get(reward_id)
    if not changed or updated is None:
        return [Reply(deps.texts.t("reward.unknown", id=reward_id))]
    return [Reply(deps.texts.t("reward.edited", item=_describe(deps, updated)))]


async def _remove(req: Request, deps: Deps, rest: str) -> list[Reply]:
    reward_id = required_id(deps, rest, "reward")
    async with deps.db.transaction() as repos:
        removed = await repos.rewards.remove(reward_id)
    key = "reward.removed" if removed else "reward.unknown"
    return [Reply(deps.texts.t(key, id=reward_id))]


reward = Subcommands("reward", {"add": _add, "edit": _edit, "remove": _remove})
"""Staff: /reward add | edit | remove."""


async def rewards(req: Request, deps: Deps) -> list[Reply]:
    """Members: what they can redeem now, what is close, and the rest."""
    async with deps.db.read() as repos:
        member = await repos.members.get(req.member_id)
        offered = await repos.rewards.active()
    assert member is not None
    if not offered:
        return [Reply(deps.texts.t("rewards.none"))]
    tier = member_tier(deps, member)
    affordable, close, later = [], [], []
    for item in offered:
        line = _describe(deps, item)
        required = deps.rules.tier_by_id(item.min_tier) if item.min_tier else None
        if required is not None and tier.min_points < required.min_points:
            later.append(line)
        elif item.left == 0:
            later.append(line + deps.texts.t("rewards.gone"))
        elif item.cost <= member.balance:
            affordable.append(line)
        elif item.cost - member.balance <= item.cost * CLOSE_FRACTION:
            close.append(line + deps.texts.t("rewards.missing", missing=item.cost - member.balance))
        else:
            later.append(line)
    lines = [deps.texts.t("rewards.header", balance=member.balance)]
    for key, group in (("rewards.can", affordable), ("rewards.close", close), ("rewards.later", later)):
        if group:
            lines += ["", deps.texts.t(key), *group]
    lines += ["", deps.texts.t("rewards.footer")]
    return [Reply("\n".join(lines))]


async def redeem(req: Request, deps: Deps) -> list[Reply]:
    reward_id = required_id(deps, req.args, "redeem")
    now = deps.now_ts()
    code = new_code("R")
    async with deps.db.read() as repos:
        item = await repos.rewards.get(reward_id)
        member = await repos.members.get(req.member_id)
    assert member is not None
    if item is None or item.state != "active":
        return [Reply(deps.texts.t("reward.unknown", id=reward_id))]
    required = deps.rules.tier_by_id(item.min_tier) if item.min_tier else None
    if required is not None and member_tier(deps, member).min_points < required.min_points:
        return [Reply(deps.texts.t("redeem.tier_low", name=item.name, tier=deps.tier_name(required)))]
    try:
        async with deps.db.transaction() as repos:
            if not await repos.rewards.take_one(reward_id):
                return [Reply(deps.texts.t("redeem.gone", name=item.name))]
            booking = await repos.ledger.append(
                req.member_id, -item.cost, "redeem", f"redeem:{req.msg.key}", now, note=item.name,
                ref=code, earned_delta=0,
            )  # fmt: skip
            if not booking.booked:
                raise Refusal(Reply(deps.texts.t("duplicate")))  # the same message again: undo the stock taken
            await repos.rewards.record(reward_id, req.member_id, code, item.cost, now)
    except InsufficientPoints:
        return [Reply(deps.texts.t("redeem.insufficient", name=item.name, cost=item.cost, balance=member.balance))]
    return [
        Reply(
            deps.texts.t("redeem.done", name=item.name, cost=item.cost, code=code, balance=booking.balance), secret=True
        )
    ]


async def redeemed(req: Request, deps: Deps) -> list[Reply]:
    """Staff: mark a redemption handed over."""
    code = required_code(deps, req.args, "redeemed")
    async with deps.db.transaction() as repos:
        found = await repos.rewards.by_code(code)
        handed = found is not None and await repos.rewards.hand_over(code, req.member_id, deps.now_ts())
    if found is None:
        return [Reply(deps.texts.t("redeemed.unknown", code=code))]
    req.audit.target = found.member_id  # the audit row names whose reward was handed over
    if not handed:
        return [Reply(deps.texts.t("redeemed.already", code=code, name=found.reward_name, member=found.display_name))]
    return [Reply(deps.texts.t("redeemed.done", code=code, name=found.reward_name, member=found.display_name))]
