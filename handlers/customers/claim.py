"""Claiming an imported customer: the member who talks to the bot and the record the shop imported for them
become one member (the imported one, with its number and, unless the file had none, its name).

Proof that the record is theirs, never just a typed number:

* on Telegram, the contact-request key (`绑定手机` offers it): Telegram sends the sender's own number, and only a
  contact whose user is the sender counts (a forwarded card or one typed in names someone else);
* anywhere (WeChat too), `绑定手机 <phone> <code>` with the code staff show for that phone (`/claimcode <phone>`:
  staff see the customer at the till). Without a code nothing is claimed, and the answer is the same whether
  the number is known or not. Wrong codes count against the same limits as wrong binding codes (per member and
  for everyone, in the database); a code works once and for `CLAIM_CODE_MINUTES`.

The merge is the one of linked accounts (`handlers.binding`): points move over through the ledger, rows and
identities follow, referrals between the two are voided.
"""

from __future__ import annotations

import re

from handlers.binding.commands import ALL_TRIES, merge_members, take_try
from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.parsing import split_first
from handlers.customers.importing import default_name
from handlers.customers.rows import BadCell, parse_phone
from handlers.referrals.commands import follow_merge, paid_between, take_back
from handlers.shared.codes import ALPHABET, new_code, normalise
from handlers.shared.tiers import member_tier
from storage.repos import Repos

CONTACT_COMMAND = "phone_contact"
"""The hidden command a shared phone number stands for (the channels route contacts to it)."""
CLAIM_CODE_MINUTES = 15
CODE_PREFIX = "P"
CODE_LENGTH = 6
_CODE = re.compile(rf"(?:{CODE_PREFIX}-?)?([{ALPHABET}]{{{CODE_LENGTH}}})")


def _phone(text: str) -> str | None:
    try:
        return parse_phone(text)
    except BadCell:
        return None


def _typed_code(text: str) -> str:
    cleaned = normalise(text)
    match = _CODE.fullmatch(cleaned)
    return f"{CODE_PREFIX}-{match.group(1)}" if match else cleaned[:20]


def _prompt(deps: Deps, key: str, **values: object) -> Reply:
    """An answer that also offers the key sharing the member's own number (where the platform has one)."""
    return Reply(deps.texts.t(key, **values), ask_contact=deps.texts.t("phone_claim.share_button"))


async def claim_phone(req: Request, deps: Deps) -> list[Reply]:
    """绑定手机 [<phone> [<code>]] (privately)."""
    texts = deps.texts
    if req.msg.is_group:
        return [Reply(texts.t("phone_claim.private_only"))]
    phone_text, code_text = split_first(req.args)
    if not phone_text:
        return [_prompt(deps, "phone_claim.prompt")]
    phone = _phone(phone_text)
    if phone is None:
        return [Reply(texts.t("phone_claim.bad_phone", phone=phone_text[:20]))]
    if not code_text.strip():  # the same answer for every number: it tells nobody whose number is known
        return [_prompt(deps, "phone_claim.need_code", phone=phone)]
    now = deps.now_ts()
    async with deps.db.transaction() as repos:
        reopens = await take_try(repos, deps, req)  # one budget with binding codes
        if reopens is not None:
            return [Reply(texts.n("phone_claim.too_many", max(1, -(-(reopens - now) // 60))))]
        if not await repos.customers.use_claim_code(phone, _typed_code(code_text), now):
            return [Reply(texts.t("phone_claim.wrong_code"))]  # the try stays counted
        await repos.channel_state.give_back_bind_try(f"member:{req.member_id}")
        await repos.channel_state.give_back_bind_try(ALL_TRIES)
        return await _claim(repos, deps, req, phone)


async def contact_shared(req: Request, deps: Deps) -> list[Reply]:
    """A phone number shared with the contact key: the sender's own one claims its record."""
    texts = deps.texts
    contact = req.msg.contact
    if contact is None or not contact.own:
        return [Reply(texts.t("phone_claim.not_own"), close_keyboard=True)]
    phone = _phone(contact.phone)
    if phone is None:
        return [Reply(texts.t("phone_claim.no_record"), close_keyboard=True)]
    async with deps.db.transaction() as repos:
        replies = await _claim(repos, deps, req, phone)
    return [Reply(r.text, close_keyboard=True) for r in replies]


async def _claim(repos: Repos, deps: Deps, req: Request, phone: str) -> list[Reply]:
    """Make the talking member and the imported record of `phone` one member (the imported one)."""
    texts = deps.texts
    profile = await repos.customers.by_phone(phone)
    if profile is None:
        return [Reply(texts.t("phone_claim.no_record"))]
    if profile.member_id == req.member_id:
        return [Reply(texts.t("phone_claim.already_yours"))]
    if profile.merged_into is not None or await repos.customers.has_profile(req.member_id):
        return [Reply(texts.t("phone_claim.taken"))]
    source_ids = await repos.members.identities(req.member_id)
    target_ids = await repos.members.identities(profile.member_id)
    if {i.channel for i in source_ids} & {i.channel for i in target_ids}:
        return [Reply(texts.t("phone_claim.taken"))]  # already claimed from this platform
    paid = await paid_between(repos, req.member_id, profile.member_id)
    if sum(r.referrer_points + r.referred_points for r in paid):
        return [Reply(texts.t("phone_claim.taken"))]
    await follow_merge(repos, deps, req.member_id, profile.member_id)
    await merge_members(repos, deps, req.member_id, profile.member_id)
    await take_back(repos, deps, profile.member_id, paid)
    if profile.name == default_name(phone) and req.name.strip():
        await repos.customers.rename(profile.member_id, req.name.strip()[:64])
    merged = await repos.members.get(profile.member_id)
    assert merged is not None
    tier = deps.tier_name(member_tier(deps, merged))
    return [Reply(texts.n("phone_claim.done", merged.balance, name=merged.display_name, tier=tier, id=merged.id))]


async def claim_code(req: Request, deps: Deps) -> list[Reply]:
    """Staff: /claimcode <phone> gives a short-lived code that lets that imported customer claim their record."""
    texts = deps.texts
    phone = _phone(req.args.strip()) if req.args.strip() else None
    if phone is None:
        return deps.usage("claimcode")
    now = deps.now_ts()
    async with deps.db.transaction() as repos:
        profile = await repos.customers.by_phone(phone)
        if profile is None or profile.merged_into is not None:
            return [Reply(texts.t("phone_claim.no_record"))]
        for _ in range(8):  # a clash with another live code is rare; draw again
            code = new_code(CODE_PREFIX, CODE_LENGTH)
            if not await repos.customers.code_in_use(code):
                break
        else:
            raise RuntimeError("could not find a free claim code")
        await repos.customers.set_claim_code(phone, code, now, now + CLAIM_CODE_MINUTES * 60)
    text = texts.n(
        "claimcode.code", CLAIM_CODE_MINUTES, code=code, phone=phone, name=profile.name, id=profile.member_id
    )
    return [Reply(text, secret=True)]
