"""Staff announcements: now, scheduled, their delivery outcome, and the member's /notify switch.

This package's `FEATURE` declares its commands to the core."""

from handlers.announcements import commands, recall
from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.jobs import Every, Job
from handlers.core.roles import Role

FEATURE = Feature(
    "announcements",
    commands=(
        Command("notify", commands.notify, "notify.summary", keywords=("通知",)),
        Command("announce", commands.announce, "announce.summary", role=Role.MANAGER),
        Command("schedule", commands.schedule, "schedule.summary", role=Role.MANAGER),
        Command("scheduled", commands.scheduled, "scheduled.summary", role=Role.MANAGER),
        Command("unschedule", commands.unschedule, "unschedule.summary", role=Role.MANAGER),
        Command("recall", recall.recall, "recall.summary", role=Role.MANAGER),
        Command("delivery", commands.delivery, "delivery.summary", role=Role.MANAGER),
    ),
    jobs=(Job("report_delivery_outcomes", commands.report_outcomes, lambda rules: Every(60)),),
)
