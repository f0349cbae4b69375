"""Polls (满意度调查): ratings, NPS, choices and rankings; answers, closing and results.

This package's `FEATURE` declares its commands and announcement kinds to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.jobs import At, Job
from handlers.core.roles import Role
from handlers.core.rules import Rules
from handlers.polls import commands


def _survey(rules: Rules) -> At | None:
    survey = rules.polls.survey
    return At({"day": survey.day, "hour": survey.hour, "minute": survey.minute}) if survey.enabled else None


FEATURE = Feature(
    "polls",
    commands=(
        Command("polls", commands.polls, "polls.summary", keywords=("调查", "投票")),
        Command("vote", commands.vote, "vote.summary", keywords=("评分",), members_only=True),
        Command("rank", commands.rank, "vote.summary", hidden=True, members_only=True),
        Command("native_vote", commands.native_vote, "vote.summary", hidden=True, members_only=True),
        Command("poll", commands.poll, "poll.summary", role=Role.MANAGER, prepare=commands.prepare_poll),
    ),
    jobs=(Job("satisfaction_survey", commands.start_survey, _survey),),
    due_rules=commands.DUE_RULES,
)
