"""What a feature hands to the core: its commands and, when it is time-driven, its announcement kinds and jobs.

Every feature package declares one `Feature` in its `__init__.py`; `handlers.features` lists them and the
runtime assembles the command table and the kinds' registry from that list (`handlers.core.table.assemble`).
The core never imports a feature.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from handlers.core.command import Command
from handlers.core.jobs import Job
from handlers.core.kinds import DueRule, SubjectLookup


@dataclass(frozen=True, slots=True)
class Feature:
    name: str
    commands: tuple[Command, ...] = ()
    due_rules: Mapping[str, DueRule] = field(default_factory=dict)
    """What each of its announcement kinds does when due (kinds without a rule are queued as written)."""
    jobs: tuple[Job, ...] = ()
    """Its periodic work (handlers.core.jobs)."""
    subjects: Mapping[str, SubjectLookup] = field(default_factory=dict)
    """How to look up each kind of subject it owns (an event, a sale): is it still active, when it starts."""
