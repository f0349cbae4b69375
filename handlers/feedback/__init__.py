"""The feedback desk (投诉建议): tickets, staff replies, ratings and escalation.

This package's `FEATURE` declares its commands to the core."""

from handlers.core.command import Command
from handlers.core.feature import Feature
from handlers.core.jobs import Every, Job
from handlers.core.roles import Role
from handlers.feedback import commands

FEATURE = Feature(
    "feedback",
    commands=(
        Command("feedback", commands.feedback, "feedback.summary", keywords=("投诉", "建议", "反馈"), glued=True),
        Command("rate_ticket", commands.rate_ticket, "rate_ticket.summary", hidden=True),
        Command("fallback", commands.fallback, "fallback.summary", hidden=True),
        Command("reply", commands.reply, "reply.summary", role=Role.MANAGER),
        Command("tickets", commands.tickets, "tickets.summary", role=Role.MANAGER),
        Command("close", commands.close, "close.summary", role=Role.MANAGER),
    ),
    jobs=(Job("escalate_tickets", commands.escalate, lambda rules: Every(600)),),
)
