"""/help, generated from the command table: the commands this user may use, in the configured language."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from handlers.core.command import Command, HandlerFn
from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply


def make_help(table: Callable[[], Sequence[Command]]) -> HandlerFn:
    """Build the /help handler over the (finished) command table."""

    async def show_help(req: Request, deps: Deps) -> list[Reply]:
        texts = deps.texts
        commands = [c for c in table() if not c.hidden]

        def line(command: Command) -> str:
            aliases = ""
            if command.keywords:
                aliases = texts.t("help.aliases", aliases=texts.join(command.keywords))
            summary = texts.t(command.summary_key)
            return texts.t("help.line", command=f"/{command.name}", aliases=aliases, summary=summary)

        lines = [texts.t("help.header")]
        lines += [line(c) for c in commands if not c.staff]
        if req.is_staff:
            lines += ["", texts.t("help.staff_header")]
            lines += [line(c) for c in commands if c.staff]
        lines += ["", texts.t("help.footer")]
        return [Reply("\n".join(lines))]

    return show_help
