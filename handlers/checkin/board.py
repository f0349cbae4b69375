"""The daily check-in board (签到榜): one message per group and business day that confirms every check-in
made there (today's count and the latest names with their streaks) and carries the `签到 ✅` button.

The channel posts it at the first check-in of the day and edits it as more come in; its text is drawn
from the database whenever it is sent, so one edit confirms everyone who checked in since the last: it
lists the latest `checkin.board.names` names, or every name since the board was last sent when more came
in meanwhile (a rush with edits at most every few seconds), as many as one message holds.
"""

from __future__ import annotations

from typing import NamedTuple

from handlers.core.deps import Deps
from handlers.core.messages import Button, Inbound

BUTTON_DATA = "v1:checkin:"
MAX_TEXT = 4000
"""Characters a board may have: one Telegram message (4096), with room to spare."""


class Board(NamedTuple):
    text: str
    buttons: tuple[Button, ...]
    count: int
    """Today's check-ins in the group, as the text says."""


def board_chat(msg: Inbound) -> str:
    """The key under which check-ins made in this group are listed on its board."""
    return f"{msg.channel}:{msg.chat_id}"


async def render_board(deps: Deps, channel: str, chat_id: str, day: str, shown: int | None = None) -> Board:
    """The board's current text, its button and count. `shown`: the count of the board last sent, if
    known; every check-in since then is listed (beyond `checkin.board.names`, up to what fits)."""
    texts = deps.texts
    chat = f"{channel}:{chat_id}"
    limit = deps.rules.checkin.board.names
    async with deps.db.read() as repos:
        count = await repos.boards.count(chat, day)
        latest = await repos.boards.latest(chat, day, max(limit, count - shown) if shown is not None else limit)
    head = [texts.t("board.title", day=day), texts.n("board.count", count)]
    tail = ["", texts.t("board.hint")]
    room = MAX_TEXT - sum(len(line) + 1 for line in head + tail) - len(texts.n("board.more", count)) - 2
    names: list[str] = []
    for line in latest:
        name = texts.t("board.line", name=line.name or "?", streak=line.streak)
        room -= len(name) + 1
        if room < 0:
            break
        names.append(name)
    lines = head
    if names:
        lines += ["", *names]
        if count > len(names):
            lines.append(texts.n("board.more", count - len(names)))
    return Board("\n".join(lines + tail), (Button(texts.t("board.button"), BUTTON_DATA),), count)
