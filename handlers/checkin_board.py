"""The daily check-in board (签到榜): one message per group and business day that confirms every check-in
made there (today's count and the latest names with their streaks) and carries the `签到 ✅` button.

The channel posts it at the first check-in of the day and edits it as more come in; its text is drawn
from the database whenever it is sent, so one edit confirms everyone who checked in since the last.
"""

from __future__ import annotations

from handlers.deps import Deps
from handlers.messages import Button, Inbound

BUTTON_DATA = "v1:checkin:"


def board_chat(msg: Inbound) -> str:
    """The key under which check-ins made in this group are listed on its board."""
    return f"{msg.channel}:{msg.chat_id}"


async def render_board(deps: Deps, channel: str, chat_id: str, day: str) -> tuple[str, tuple[Button, ...]]:
    """The board's current text and its button."""
    texts = deps.texts
    chat = f"{channel}:{chat_id}"
    limit = deps.rules.checkin.board.names
    async with deps.db.read() as repos:
        count = await repos.boards.count(chat, day)
        latest = await repos.boards.latest(chat, day, limit)
    lines = [texts.t("board.title", day=day), texts.n("board.count", count)]
    if latest:
        lines.append("")
        lines.extend(texts.t("board.line", name=line.name or "?", streak=line.streak) for line in latest)
        if count > len(latest):
            lines.append(texts.n("board.more", count - len(latest)))
    lines += ["", texts.t("board.hint")]
    return "\n".join(lines), (Button(texts.t("board.button"), BUTTON_DATA),)
