"""RFM segments (RFM 分层) for staff, announcement audiences, and win-back care messages.

This package's `FEATURE` declares its commands to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.jobs import At, Job
from handlers.core.roles import Role
from handlers.segments import commands

FEATURE = Feature(
    "segments",
    commands=(
        Command("segments", commands.segments, "segments.summary", role=Role.MANAGER),
        Command("segment", commands.segment, "segment.summary", role=Role.MANAGER),
    ),
    jobs=(Job("winback", commands.winback, lambda rules: At({"hour": 10, "minute": 30})),),
)
