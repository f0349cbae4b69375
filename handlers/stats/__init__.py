"""Staff statistics (/stats) and the weekly report with its chart.

This package's `FEATURE` declares its commands to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.jobs import At, Job
from handlers.core.roles import Role
from handlers.core.rules import Rules
from handlers.stats import commands


def _weekly(rules: Rules) -> At | None:
    reports = rules.reports
    return At({"day_of_week": reports.day, "hour": reports.hour}) if reports.weekly else None


FEATURE = Feature(
    "stats",
    commands=(
        Command("stats", commands.stats, "stats.summary", role=Role.MANAGER),
        Command("report", commands.report, "report.summary", role=Role.MANAGER, prepare=commands.prepare_report),
    ),
    jobs=(Job("weekly_report", commands.weekly_report, _weekly),),
)
