"""Who a staff command is about: the author of the replied-to message, a numeric id or an @username."""

from __future__ import annotations

import re
from dataclasses import dataclass

from handlers.core.deps import Request
from handlers.core.parsing import looks_like_target, parse_int, split_first
from storage.members import Member
from storage.repos import Repos

_NUMBER = re.compile(r"[+-]?\d+(\.\d+)?")


@dataclass(frozen=True, slots=True)
class TargetArgs:
    """A staff command's arguments split into who (by reference) and the rest."""

    target: str | None
    """'@name' or a numeric id as typed; None when the command replies to the member's message."""
    rest: str


def split_target(req: Request) -> TargetArgs | None:
    """Separate the target from the arguments; None when no target can be found.

    ``@name`` is always a target; a number is one when a second number follows it (``/award 12345 50``);
    otherwise, in a reply, the replied-to member is the target (``/award 50 thanks``).
    """
    head, rest = split_first(req.args)
    second, _ = split_first(rest)
    if head.startswith("@") and looks_like_target(head):
        return TargetArgs(head, rest)
    if looks_like_target(head) and _NUMBER.fullmatch(second.lstrip("¥￥")):
        return TargetArgs(head, rest)
    if req.msg.reply_to is not None:
        return TargetArgs(None, req.args)
    if looks_like_target(head) and second:
        return TargetArgs(head, rest)
    return None


async def resolve_target(repos: Repos, req: Request, target: TargetArgs) -> Member | None:
    """The member `target` names, or None; the one found is the target of the request's audit row."""
    found = await _find_target(repos, req, target)
    if found is not None:
        req.audit.target = found.id
    return found


async def _find_target(repos: Repos, req: Request, target: TargetArgs) -> Member | None:
    channel = req.msg.channel
    if target.target is None:
        replied = req.msg.reply_to
        assert replied is not None
        return await repos.members.by_identity(replied.channel, replied.external_id)
    if target.target.startswith("@"):
        return await repos.members.by_username(channel, target.target[1:])
    number = parse_int(target.target, 1)  # '１２' is 12; '-1' or 20 digits are no member's number
    found = await repos.members.by_identity(channel, target.target if number is None else str(number))
    if found is None and number is not None:
        # A member number as /me shows it also works.
        found = await repos.members.get(number)
    return found
