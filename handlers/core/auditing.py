"""What the dispatcher writes to the audit log for a staff command: who, what, on whom, where, how it ended.

Every command that needs a staff role gets a row, in the update's own transaction (a booked action always has
its row, a rolled-back one none), refused attempts included; the dispatcher writes them, so no feature can
forget to. The argument text is kept short and on one line, and left out for a command marked `secret_args`.
"""

from __future__ import annotations

from handlers.core.command import Command
from handlers.core.messages import Inbound
from handlers.core.parsing import split_first
from handlers.core.roles import Role
from storage.audit import AuditEntry, Outcome

ARGS_CHARS = 200
"""Argument text kept per row (on one line)."""


def subcommand_of(command: Command, args: str) -> str:
    """The sub-command word, when the first argument is one (``add``); '' for a target, a number or a name."""
    word = split_first(args)[0].lower()
    if word in command.sub_roles or (word.isascii() and word.isalpha() and len(word) <= 20):
        return word
    return ""


def audit_entry(
    msg: Inbound, command: Command, args: str, *, member_id: int, role: Role | None, target: int | None,
    outcome: Outcome, at: int,
) -> AuditEntry:  # fmt: skip
    kept = "" if command.secret_args else " ".join(args.split())[:ARGS_CHARS]
    return AuditEntry(
        at=at, actor_member_id=member_id, actor_channel=msg.sender.channel, actor_external_id=msg.sender.external_id,
        role=role.value if role is not None else None, command=command.name, subcommand=subcommand_of(command, args),
        args=kept, target_member_id=target, chat_id=msg.chat_id, in_group=msg.is_group, outcome=outcome,
    )  # fmt: skip
