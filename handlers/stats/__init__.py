"""Staff statistics (/stats) and the weekly report with its chart.

This package's `FEATURE` declares its commands to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.stats import commands

FEATURE = Feature(
    "stats",
    commands=(
        Command("stats", commands.stats, "stats.summary", staff=True),
        Command("report", commands.report, "report.summary", staff=True, prepare=commands.prepare_report),
    ),
)
