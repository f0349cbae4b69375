"""The shape of one entry in the command table: name, aliases, keywords, who may use it, help text."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from handlers.deps import Deps, Request
from handlers.messages import Reply

HandlerFn = Callable[[Request, Deps], Awaitable[list[Reply]]]


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
    hidden: bool = False
    """Left out of /help (e.g. /start)."""
    asks_platform: bool = False
    """The handler may ask the platform (group membership, staff): the dispatcher asks first, outside the
    update's transaction, so the answer is cached and no transaction waits for the network."""
