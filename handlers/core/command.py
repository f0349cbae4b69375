"""The shape of one entry in the command table: name, aliases, keywords, who may use it, help text, and the
slow work (a chart) it does before the update's transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from handlers.core.deps import Deps
from handlers.core.messages import Inbound, Reply
from handlers.core.parsing import parse_id
from storage.db.rollback import Rollback

HandlerFn = Callable[..., Awaitable[list[Reply]]]
"""`(req, deps)`; for a command with a `prepare` step, `(req, deps, prepared=<what it returned>)`."""


class Refusal(Rollback):
    """A handler's way to stop half-way with an answer: ``raise Refusal(Reply(...))``. Everything the handler
    wrote is undone (it is the transaction's `Rollback`), the update is done, and the member gets `replies`."""

    def __init__(self, *replies: Reply) -> None:
        super().__init__(*(r.text for r in replies))
        self.replies = list(replies)


def required_id(deps: Deps, text: str, usage: str) -> int:
    """The id (a positive number) that `text` is; a `Refusal` with the usage of the command `usage` when it is
    none (``/event show x``)."""
    found = parse_id(text)
    if found is None:
        raise Refusal(*deps.usage(usage))
    return found


@dataclass(frozen=True, slots=True)
class Preparing:
    """What a `prepare` step knows: the message and its argument text (the sender is not looked up yet)."""

    msg: Inbound
    args: str
    is_staff: bool


PrepareFn = Callable[[Preparing, Deps], Awaitable[Any]]


@dataclass(frozen=True, slots=True)
class Command:
    name: str
    handler: HandlerFn
    summary_key: str
    """Catalog key of the one-line help text."""
    aliases: tuple[str, ...] = ()
    """Other slash names (lower-case ASCII)."""
    keywords: tuple[str, ...] = ()
    """Plain-text triggers such as 签到; they work without a slash."""
    glued: bool = False
    """Its keywords may run straight into free text ("投诉快递太慢"), not only into a number."""
    staff: bool = False
    """Only staff may use it (staff listed in the configuration, or admins of a listed VIP group)."""
    hidden: bool = False
    """Left out of /help (e.g. /start)."""
    members_only: bool = False
    """Taking part is for members of a VIP group: from a private chat the dispatcher asks the platform
    whether the sender is in one, and refuses outsiders before the handler runs."""
    staff_subcommands: tuple[str, ...] = ()
    """Sub-commands (the first argument, lower-case) that only staff may use: ``/groupbuy add``."""
    member_subcommands: tuple[str, ...] = ()
    """Sub-commands that are members-only, as `members_only` is for the whole command: ``/groupbuy join``."""
    prepare: PrepareFn | None = None
    """Slow work (drawing a chart, from a read) that the dispatcher runs before the update's write transaction,
    once the rights checks passed, so no other write waits for it; the handler gets its result as `prepared`."""

    def needs_staff(self, sub: str) -> bool:
        return self.staff or sub in self.staff_subcommands

    def needs_membership(self, sub: str) -> bool:
        return self.members_only or sub in self.member_subcommands
