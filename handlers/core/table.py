"""The one command table: every command, its aliases and keywords, who may use it and its help text.

Who may use it is declared here and checked by the dispatcher, in one place: ``staff`` (staff only) and
``members_only`` (taking part in claims, group buys, polls, rewards and events is for VIP group members, from
a private chat too), or per sub-command (``/groupbuy add`` is staff's, ``/groupbuy join`` members').
"""

from __future__ import annotations

from handlers.announcements import commands as announcements
from handlers.binding import commands as binding
from handlers.checkin import commands as checkin
from handlers.core.command import Command
from handlers.core.help import make_help
from handlers.events import commands as events
from handlers.feedback import commands as feedback
from handlers.greetings import commands as greetings
from handlers.group_buys import commands as group_buys
from handlers.members import commands as members
from handlers.points import bookings as staff_points
from handlers.points import commands as points
from handlers.polls import commands as polls
from handlers.referrals import commands as referrals
from handlers.rewards import commands as rewards
from handlers.sales import commands as sales
from handlers.segments import commands as segments
from handlers.stats import commands as stats


def build_commands() -> list[Command]:
    table: list[Command] = [
        Command("start", referrals.start_with_referral, "start_cmd.summary", hidden=True),
        Command("invite", referrals.invite, "invite.summary", keywords=("邀请",)),
        Command("checkin", checkin.checkin, "checkin.summary", keywords=("签到", "打卡")),
        Command("points", points.points, "points.summary", aliases=("balance",), keywords=("积分", "我的积分")),
        Command("me", members.me, "me.summary", aliases=("profile",), keywords=("我的",)),
        Command("birthday", members.birthday, "birthday.summary", keywords=("生日",)),
        Command("events", events.events, "events.summary", keywords=("活动",)),
        Command("join", events.join, "join.summary", keywords=("报名",), members_only=True),
        Command("leave", events.leave, "leave.summary", keywords=("取消报名",)),
        Command("notify", announcements.notify, "notify.summary", keywords=("通知",)),
        Command("bind", binding.bind, "bind.summary", keywords=("绑定",)),
        Command("claim", sales.claim, "claim.summary", keywords=("抢", "秒杀"), members_only=True),
        Command(
            "groupbuy",
            group_buys.groupbuy,
            "groupbuy.summary",
            keywords=("团购",),
            staff_subcommands=group_buys.STAFF_SUBCOMMANDS,
            member_subcommands=group_buys.MEMBER_SUBCOMMANDS,
        ),
        Command("polls", polls.polls, "polls.summary", keywords=("调查", "投票")),
        Command("vote", polls.vote, "vote.summary", keywords=("评分",), members_only=True),
        Command("rank", polls.rank, "vote.summary", hidden=True, members_only=True),
        Command("native_vote", polls.native_vote, "vote.summary", hidden=True, members_only=True),
        Command("rewards", rewards.rewards, "rewards.summary", keywords=("积分商城", "兑换列表")),
        Command("redeem", rewards.redeem, "redeem.summary", keywords=("兑换",), members_only=True),
        Command("feedback", feedback.feedback, "feedback.summary", keywords=("投诉", "建议", "反馈"), glued=True),
        Command("rate_ticket", feedback.rate_ticket, "rate_ticket.summary", hidden=True),
        Command("fallback", feedback.fallback, "fallback.summary", hidden=True),
        Command("award", staff_points.award, "award.summary", staff=True),
        Command("deduct", staff_points.deduct, "deduct.summary", staff=True),
        Command("purchase", staff_points.purchase, "purchase.summary", staff=True),
        Command("announce", announcements.announce, "announce.summary", staff=True),
        Command("schedule", announcements.schedule, "schedule.summary", staff=True),
        Command("scheduled", announcements.scheduled, "scheduled.summary", staff=True),
        Command("unschedule", announcements.unschedule, "unschedule.summary", staff=True),
        Command("delivery", announcements.delivery, "delivery.summary", staff=True),
        Command("event", events.event, "event.summary", staff=True),
        Command("sale", sales.sale, "sale.summary", staff=True),
        Command("unlink", binding.unlink, "unlink.summary", staff=True),
        Command("segments", segments.segments, "segments.summary", staff=True),
        Command("segment", segments.segment, "segment.summary", staff=True),
        Command("stats", stats.stats, "stats.summary", staff=True),
        Command("report", stats.report, "report.summary", staff=True, prepare=stats.prepare_report),
        Command("greetings", greetings.greetings, "greetings.summary", keywords=("节日问候",), staff=True),
        Command("poll", polls.poll, "poll.summary", staff=True, prepare=polls.prepare_poll),
        Command("reward", rewards.reward, "reward.summary", staff=True),
        Command("redeemed", rewards.redeemed, "redeemed.summary", staff=True),
        Command("reply", feedback.reply, "reply.summary", staff=True),
        Command("tickets", feedback.tickets, "tickets.summary", staff=True),
        Command("close", feedback.close, "close.summary", staff=True),
    ]
    table.append(Command("help", make_help(lambda: table), "help_cmd.summary", keywords=("帮助",)))
    return table
