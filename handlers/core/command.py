"""The shape of one entry in the command table: name, aliases, keywords, who may use it, help text, and the
slow work (a chart) it does before the update's transaction."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from handlers.core.deps import Deps
from handlers.core.messages import Inbound, Reply
from handlers.core.parsing import option_leftovers, parse_id, parse_options
from handlers.core.roles import Role, higher
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


def id_and_options(deps: Deps, args: str, usage: str, allowed: set[str]) -> tuple[int, dict[str, str]]:
    """``<id> key=value …`` (``/sale edit 3 price=99 stock=10``): the id and at least one option, each of
    `allowed`; a `Refusal` with the usage of the command `usage` otherwise."""
    id_text, _, opts = args.strip().partition(" ")
    found = required_id(deps, id_text, usage)
    options = parse_options(opts)
    if not options or option_leftovers(opts) or not set(options) <= allowed:
        raise Refusal(*deps.usage(usage))
    return found, options


@dataclass(frozen=True, slots=True)
class Preparing:
    """What a `prepare` step knows: the message and its argument text (the sender is not looked up yet)."""

    msg: Inbound
    args: str
    role: Role | None
    """The sender's staff role (None: a member)."""

    @property
    def is_staff(self) -> bool:
        return self.role is not None


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
    role: Role | None = None
    """The least staff role that may use it (None: everyone). Roles come from the configuration only."""
    hidden: bool = False
    """Left out of /help (e.g. /start)."""
    members_only: bool = False
    """Taking part is for members of a VIP group: from a private chat the dispatcher asks the platform
    whether the sender is in one, and refuses outsiders before the handler runs."""
    sub_roles: Mapping[str, Role] = field(default_factory=dict)
    """The least role of sub-commands (the first argument, lower-case) that need more than the command:
    ``/groupbuy add`` is a manager's."""
    member_subcommands: tuple[str, ...] = ()
    """Sub-commands that are members-only, as `members_only` is for the whole command: ``/groupbuy join``."""
    prepare: PrepareFn | None = None
    """Slow work (drawing a chart, from a read) that the dispatcher runs before the update's write transaction,
    once the rights checks passed, so no other write waits for it; the handler gets its result as `prepared`."""
    secret_args: bool = False
    """Its arguments are never written to the audit log (only the command and its sub-command)."""

    def needed_role(self, sub: str) -> Role | None:
        """The least role that may run it with the sub-command `sub` (None: everyone)."""
        return higher(self.role, self.sub_roles.get(sub))

    @property
    def staff(self) -> bool:
        """Some role is needed for the whole command (it is listed under the staff's commands in /help)."""
        return self.role is not None

    def needs_membership(self, sub: str) -> bool:
        return self.members_only or sub in self.member_subcommands
