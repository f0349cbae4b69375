"""The one way a command picks its sub-command: ``/event add …``, ``/sale cancel 3``, ``/invite 统计``.

A `Subcommands` table maps the first word of the arguments (lower-cased; several words may name one handler,
such as ``resend`` and ``重发``) to a handler ``(req, deps, rest)`` that gets the text after that word. With no
word, or a word the table does not know, it answers with the command's usage unless told otherwise. Who may use
a sub-command is declared on the `Command` (`sub_roles`) and checked by the dispatcher, never here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.parsing import split_first

SubHandler = Callable[..., Awaitable[list[Reply]]]
"""``(req, deps, rest, **context)``: the request, the dependencies, the text after the sub-command's word, and
whatever context the command passes on (a prepared chart)."""


@dataclass(frozen=True, slots=True)
class Subcommands:
    usage: str
    """Catalog key whose ``.usage`` answers a missing or unknown sub-command."""
    handlers: Mapping[str, SubHandler]
    """First word (lower-case) -> its handler; give every spelling of a word (``stats``, ``统计``) its entry."""
    missing: SubHandler | None = None
    """What no word at all does (``/groupbuy`` lists the open ones); the usage when None."""
    otherwise: SubHandler | None = None
    """What an unknown first word does, given all of the arguments as `rest` (``/delivery 12``); the usage when
    None."""
    alone: bool = False
    """The word must be all of the arguments (``/notify on``): anything after it makes it an unknown word."""

    async def __call__(self, req: Request, deps: Deps, **context: Any) -> list[Reply]:
        word, rest = split_first(req.args)
        handler = self.handlers.get(word.lower()) if word and not (self.alone and rest) else None
        if handler is not None:
            return await handler(req, deps, rest, **context)
        fallback = self.missing if not word else self.otherwise
        if fallback is None:
            return deps.usage(self.usage)
        return await fallback(req, deps, req.args.strip() if word else "", **context)
