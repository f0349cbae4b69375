"""The audit log, for managers: `/audit [member <n> | staff <n> | today] [page]` lists who did what, newest first.

The rows themselves are written by the dispatcher for every command that needs a staff role (see
handlers.core.auditing), and by `record_command_line` for what the command line does (an import).

This package's `FEATURE` declares its commands to the core."""

from handlers.audit import commands
from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.roles import Role

FEATURE = Feature(
    "audit",
    commands=(Command("audit", commands.audit, "audit.summary", keywords=("操作记录",), role=Role.MANAGER),),
)
