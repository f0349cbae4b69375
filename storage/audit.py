"""The audit log: one row per staff command, written in the command's own transaction, and its pages.

Pages are read newest first through an index (by time, by target, by actor), LIMIT/OFFSET over at most a few
pages back; one row more than a page says whether another page follows, so no count runs over the whole log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from storage.db.sql import Repo, fetch_all_as

Outcome = Literal["done", "undone", "failed", "refused"]
Filter = Literal["all", "member", "staff", "since"]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """What is written: who (member and channel identity, with their role), what, on whom, where, how it ended."""

    at: int
    actor_member_id: int | None
    actor_channel: str
    actor_external_id: str
    role: str | None
    command: str
    subcommand: str
    args: str
    target_member_id: int | None
    chat_id: str
    in_group: bool
    outcome: Outcome


@dataclass(frozen=True, slots=True)
class AuditRow(AuditEntry):
    """An entry as listed: its number, and the names of the actor and the target as they are now."""

    id: int
    actor_name: str
    target_name: str | None


@dataclass(frozen=True, slots=True)
class AuditPage:
    rows: list[AuditRow]
    more: bool
    """Another (older) page follows."""


_WHERE: dict[Filter, str] = {
    "all": "true",
    "member": "a.target_member_id = :value",
    "staff": "a.actor_member_id = :value",
    "since": "a.at >= :value",
}

_SELECT = (
    "SELECT a.id, a.at, a.actor_member_id, COALESCE(actor.display_name, a.actor_external_id) AS actor_name,"
    " a.actor_channel, a.actor_external_id, a.role, a.command, a.subcommand, a.args, a.target_member_id,"
    " target.display_name AS target_name, a.chat_id, a.in_group, a.outcome"
    " FROM audit_log a LEFT JOIN members actor ON actor.id = a.actor_member_id"
    " LEFT JOIN members target ON target.id = a.target_member_id"
)


class AuditRepo(Repo):
    async def record(self, entry: AuditEntry) -> None:
        await self._conn.execute(
            "INSERT INTO audit_log (at, actor_member_id, actor_channel, actor_external_id, role, command, subcommand,"
            " args, target_member_id, chat_id, in_group, outcome) VALUES (:at, :actor_member_id, :actor_channel,"
            " :actor_external_id, :role, :command, :subcommand, :args, :target_member_id, :chat_id, :in_group,"
            " :outcome)",
            {
                "at": entry.at, "actor_member_id": entry.actor_member_id, "actor_channel": entry.actor_channel,
                "actor_external_id": entry.actor_external_id, "role": entry.role, "command": entry.command,
                "subcommand": entry.subcommand, "args": entry.args, "target_member_id": entry.target_member_id,
                "chat_id": entry.chat_id, "in_group": int(entry.in_group), "outcome": entry.outcome,
            },
        )  # fmt: skip

    async def page(self, where: Filter, value: int | None, size: int, offset: int) -> AuditPage:
        """Entries newest first: all of them, those about member `value`, by staff member `value`, or since the
        unix time `value`; `size` of them after skipping `offset`."""
        rows = await fetch_all_as(
            self._conn, AuditRow,
            f"{_SELECT} WHERE {_WHERE[where]} ORDER BY a.id DESC LIMIT :limit OFFSET :offset",
            {"value": value, "limit": size + 1, "offset": offset},
        )  # fmt: skip
        return AuditPage(rows[:size], len(rows) > size)
