"""The command table, the kinds' registry and the periodic jobs, assembled from the features' declarations.

Who may use a command is declared with it and checked by the dispatcher, in one place: ``role`` (the least staff
role: cashier, manager or owner) and ``members_only`` (taking part in claims, group buys, polls, rewards and events
is for VIP group members, from a private chat too), or per sub-command (``sub_roles``: ``/groupbuy add`` is a
manager's; ``member_subcommands``: ``/groupbuy join`` members'). A name,
alias or keyword claimed twice is refused by the dispatcher that is built over the table.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.help import make_help
from handlers.core.jobs import Job
from handlers.core.kinds import Kinds


@dataclass(frozen=True, slots=True)
class Table:
    commands: tuple[Command, ...]
    kinds: Kinds
    jobs: tuple[Job, ...]


def assemble(features: Iterable[Feature]) -> Table:
    """One table from every feature's commands (plus /help over them) and one registry from their kinds."""
    features = tuple(features)
    names = [f.name for f in features]
    if len(set(names)) != len(names):
        raise ValueError(f"a feature is listed twice: {names}")
    commands: list[Command] = [c for f in features for c in f.commands]
    commands.append(Command("help", make_help(lambda: commands), "help_cmd.summary", keywords=("帮助",)))
    kinds = Kinds.assemble((f.due_rules, f.subjects) for f in features)
    jobs = tuple(job for f in features for job in f.jobs)
    ids = [job.id for job in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError(f"two jobs share an id: {sorted(i for i in ids if ids.count(i) > 1)}")
    return Table(tuple(commands), kinds, jobs)
