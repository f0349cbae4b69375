"""Periodic work is declared by the features (`Feature.jobs`) and scheduled by the runtime from their rules:
each job is on the one scheduler with the schedule the configuration gives, and a job the configuration turns
off is not scheduled at all."""

from __future__ import annotations

from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.app.config import Settings
from bot.app.runtime import Runtime
from handlers.core.clock import FakeClock
from handlers.core.rules import BirthdayRules, ReportRules
from handlers.core.table import assemble
from handlers.features import FEATURES


def _fields(trigger: CronTrigger) -> dict[str, str]:
    return {f.name: str(f) for f in trigger.fields if not f.is_default}


def test_every_features_job_and_the_runtimes_own_are_scheduled_once(runtime: Runtime) -> None:
    ids = {job.id for job in runtime.scheduler.get_jobs()}
    assert {"expire_sale_holds", "plan_greetings", "birthdays", "winback", "escalate_tickets",
            "report_delivery_outcomes", "prune_seen_updates", "refresh_live_posts"} <= ids  # fmt: skip
    assert "weekly_report" not in ids and "satisfaction_survey" not in ids  # both off by default
    declared = [job.id for job in assemble(FEATURES).jobs]
    assert len(declared) == len(set(declared))


def test_a_jobs_schedule_comes_from_the_rules(runtime: Runtime) -> None:
    holds = runtime.scheduler.get_job("expire_sale_holds")
    assert isinstance(holds.trigger, IntervalTrigger) and holds.trigger.interval.total_seconds() == 60
    birthdays = runtime.scheduler.get_job("birthdays")
    assert isinstance(birthdays.trigger, CronTrigger)
    assert _fields(birthdays.trigger) == {"hour": str(runtime.deps.rules.birthdays.hour), "minute": "1"}


async def test_jobs_the_configuration_turns_on_run_when_it_says(settings: Settings, clock: FakeClock) -> None:
    configured = settings.model_copy(
        update={"reports": ReportRules(weekly=True, day="fri", hour=18), "birthdays": BirthdayRules(hour=7)}
    )
    runtime = await Runtime.open(configured, clock)
    try:
        report = runtime.scheduler.get_job("weekly_report")
        assert report is not None and _fields(report.trigger) == {"day_of_week": "fri", "hour": "18"}
        assert _fields(runtime.scheduler.get_job("birthdays").trigger) == {"hour": "7", "minute": "1"}
    finally:
        await runtime.close()
