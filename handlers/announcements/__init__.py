"""Staff announcements: now, scheduled, their delivery outcome, and the member's /notify switch.

This package's `FEATURE` declares its commands to the core."""

from handlers.announcements import commands
from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.jobs import Every, Job

FEATURE = Feature(
    "announcements",
    commands=(
        Command("notify", commands.notify, "notify.summary", keywords=("通知",)),
        Command("announce", commands.announce, "announce.summary", staff=True),
        Command("schedule", commands.schedule, "schedule.summary", staff=True),
        Command("scheduled", commands.scheduled, "scheduled.summary", staff=True),
        Command("unschedule", commands.unschedule, "unschedule.summary", staff=True),
        Command("delivery", commands.delivery, "delivery.summary", staff=True),
    ),
    jobs=(Job("report_delivery_outcomes", commands.report_outcomes, lambda rules: Every(60)),),
)
