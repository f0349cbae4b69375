"""/help, generated from the command table: the commands this user may use (a member's, then those of their staff
role, if any, under a header naming it), in the configured language;
`/help <command>` (a name, an alias or a keyword: ``/help points``, ``/help 签到``) shows that command's usage."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from handlers.core.command import Command, HandlerFn
from handlers.core.deps import Deps, Request
from handlers.core.messages import Reply
from handlers.core.parsing import split_first
from handlers.core.roles import may


def make_help(table: Callable[[], Sequence[Command]]) -> HandlerFn:
    """Build the /help handler over the (finished) command table."""

    async def show_help(req: Request, deps: Deps) -> list[Reply]:
        texts = deps.texts
        commands = [c for c in table() if not c.hidden and may(req.role, c.role)]

        def aliases(command: Command) -> str:
            return texts.t("help.aliases", aliases=texts.join(command.keywords)) if command.keywords else ""

        def line(command: Command) -> str:
            summary = texts.t(command.summary_key)
            return texts.t("help.line", command=f"/{command.name}", aliases=aliases(command), summary=summary)

        asked = split_first(req.args)[0].lstrip("/").casefold()
        if asked:
            found = next((c for c in commands if asked in (c.name, *c.aliases, *(k.casefold() for k in c.keywords))),
                         None)  # fmt: skip
            if found is None:
                return [Reply(texts.t("help.unknown", command=asked))]
            usages = texts.usages(found.summary_key.rpartition(".")[0])
            lines = [line(found), *(texts.t("help.usage", usage=u) for u in usages)]
            return [Reply("\n".join(lines))]
        lines = [texts.t("help.header")]
        lines += [line(c) for c in commands if not c.staff]
        if req.role is not None:
            lines += ["", texts.t("help.staff_header"), texts.t("help.role", role=texts.t(f"role.{req.role.value}"))]
            lines += [line(c) for c in commands if c.staff]
        lines += ["", texts.t("help.footer")]
        return [Reply("\n".join(lines))]

    return show_help
