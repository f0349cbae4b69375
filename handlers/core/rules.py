"""The programme's rules as configuration: check-in points, purchase earn rate and VIP tiers.

`RuleSections` are the rule sections of config.yaml; `bot.app.config.Settings` reads them next to the channel
and storage settings, and hands the handlers a `Rules` holding these sections alone, so no handler can reach
a token or a secret.
"""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class StrictModel(BaseModel):
    """A settings section that rejects unknown keys, so a typo in config.yaml is reported."""

    model_config = ConfigDict(extra="forbid")


class BoardRules(StrictModel):
    """The daily check-in board (签到榜) a group gets instead of one reply per check-in."""

    enabled: bool = Field(True, description="false: one (coalesced) reply per check-in, for small groups")
    pin: bool = Field(False, description="pin the board when it is posted (the bot must be allowed to pin)")
    names: int = Field(60, ge=5, le=150, description="latest names the board lists")


class CheckinRules(StrictModel):
    base_points: int = Field(10, ge=0, description="points for every check-in")
    streak_bonus: int = Field(2, ge=0, description="extra points per consecutive day after the first")
    streak_bonus_cap: int = Field(20, ge=0, description="the streak bonus never exceeds this")
    rollover_hour: int = Field(0, ge=0, le=23, description="local hour at which a new business day starts")
    board: BoardRules = Field(default_factory=BoardRules)

    def points_for(self, streak: int) -> int:
        return self.base_points + min(self.streak_bonus * max(streak - 1, 0), self.streak_bonus_cap)


class Tier(StrictModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    min_points: int = Field(ge=0)
    name: str | None = None
    """Display name; when empty the message catalog's ``tier.<id>`` is used."""
    privileges: str | dict[str, str] = ""
    """What the tier gives, as /tiers shows it: one text, or locale -> text (e.g. {zh_CN: ..., en: ...}); when
    empty the message catalog's ``tiers.privileges_<id>`` (if any) is used."""

    def privileges_in(self, locale: str) -> str:
        """The configured privileges text for `locale` (a mapping falls back to zh_CN, then to any entry)."""
        if isinstance(self.privileges, str):
            return self.privileges
        chosen = self.privileges.get(locale) or self.privileges.get("zh_CN")
        return chosen or next(iter(self.privileges.values()), "")


def default_tiers() -> list[Tier]:
    return [
        Tier(id="gold", min_points=0),
        Tier(id="diamond", min_points=600),
        Tier(id="black", min_points=1800),
    ]


class ExpiryRules(StrictModel):
    """Points expiry (off by default): points expire, oldest first, a while after the period they were earned in.

    `end_of_following_year`: points earned in 2025 expire at the end of 2026. `months`: points earned in a month
    expire at the end of the month `months` later (months: 12 → earned in March 2025, expire end of March 2026).
    """

    enabled: bool = False
    rule: Literal["end_of_following_year", "months"] = "end_of_following_year"
    months: int = Field(12, ge=1, le=120, description="for rule 'months': how many months after the earning month")
    remind_days: int = Field(30, ge=0, le=365, description="members are reminded this many days before (0: never)")
    hour: int = Field(0, ge=0, le=23, description="local hour the daily expiry job runs")


class PointsRules(StrictModel):
    per_yuan: Decimal = Field(Decimal(1), ge=0, description="points earned per yuan of a recorded purchase")
    max_award: int = Field(100_000, gt=0, description="largest single /award or /deduct")
    expiry: ExpiryRules = Field(default_factory=ExpiryRules)


_DURATION = re.compile(r"^(\d+)([dhm])$")


def parse_duration(text: str) -> timedelta:
    """'5d', '2h', '30m' as a timedelta; ValueError otherwise."""
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise ValueError(f"{text!r} is not a duration such as 5d, 2h or 30m")
    amount, unit = int(match.group(1)), match.group(2)
    return {"d": timedelta(days=amount), "h": timedelta(hours=amount), "m": timedelta(minutes=amount)}[unit]


class EventRules(StrictModel):
    promo_lead_days: int = Field(5, ge=0, description="the first promo goes out at least this many days ahead")
    promo_leads: list[str] = Field(default_factory=lambda: ["5d", "3d", "1d", "2h"])
    late_grace_hours: float = Field(6, ge=0, description="a missed push is still sent this late, else skipped")
    attend_points: int = Field(20, ge=0, description="points for attending an event, unless the event says")
    attend_hours_after: float = Field(
        6, gt=0, description="attendance is recorded from the event's start until this many hours after it"
    )

    @field_validator("promo_leads")
    @classmethod
    def _leads_valid(cls, leads: list[str]) -> list[str]:
        if not leads:
            raise ValueError("at least one promo lead is needed")
        durations = [parse_duration(lead) for lead in leads]
        if len(set(durations)) != len(durations):
            raise ValueError("promo leads must differ")
        return [lead for _, lead in sorted(zip(durations, leads, strict=True), reverse=True)]

    @model_validator(mode="after")
    def _first_lead_early_enough(self) -> EventRules:
        if parse_duration(self.promo_leads[0]) < self.min_lead:
            raise ValueError(f"the earliest promo lead must be at least promo_lead_days ({self.promo_lead_days}d)")
        return self

    def leads(self) -> list[tuple[str, timedelta]]:
        """(label, duration) from the earliest promo to the last."""
        return [(lead, parse_duration(lead)) for lead in self.promo_leads]

    @property
    def min_lead(self) -> timedelta:
        return timedelta(days=self.promo_lead_days)

    @property
    def grace(self) -> timedelta:
        return timedelta(hours=self.late_grace_hours)

    @property
    def attend_window(self) -> timedelta:
        return timedelta(hours=self.attend_hours_after)


class SaleRules(StrictModel):
    early_access_minutes: dict[str, int] = Field(default_factory=lambda: {"black": 10, "diamond": 5})
    """Tier id -> minutes before everyone else that the tier may claim (announced to them privately)."""
    edit_interval_seconds: float = Field(15, ge=3, description="group posts' stock line is edited at most this often")

    def early(self, tier_id: str) -> timedelta:
        return timedelta(minutes=self.early_access_minutes.get(tier_id, 0))


class GroupBuyRules(StrictModel):
    no_deposit_tiers: list[str] = Field(default_factory=lambda: ["diamond", "black"])
    deposit_percent: int = Field(10, ge=0, le=100, description="deposit asked of other members, % of the group price")


class FeedbackRules(StrictModel):
    answer_within_hours: float = Field(24, gt=0, description="members are promised an answer within this time")
    escalate_after_hours: float = Field(20, gt=0, description="an unanswered ticket is escalated to staff then")

    @property
    def answer_within(self) -> timedelta:
        return timedelta(hours=self.answer_within_hours)

    @property
    def escalate_after(self) -> timedelta:
        return timedelta(hours=self.escalate_after_hours)


class SurveyRules(StrictModel):
    """The recurring satisfaction survey (a rating poll) and the follow-up rating after a purchase."""

    enabled: bool = False
    day: str = Field("1st mon", description="APScheduler cron 'day' field: '1st mon' = first Monday of the month")
    hour: int = Field(10, ge=0, le=23)
    minute: int = Field(0, ge=0, le=59)
    question: str = ""
    """Empty: the catalog's default question."""
    open_hours: int = Field(72, ge=1, description="how long each survey stays open")
    purchase_followup_days: int = Field(
        0, ge=0, description="ask for a private rating this many days after a purchase (0: off)"
    )


class PollRules(StrictModel):
    default_open_hours: int = Field(72, ge=1, description="a poll without --close or --hours closes after this")
    survey: SurveyRules = Field(default_factory=SurveyRules)


class CustomDay(StrictModel):
    """A shop's own yearly day (anniversary, member day) greeted like a holiday."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    date: str = Field(pattern=r"^\d{2}-\d{2}$", description="MM-DD, every year")
    name: str
    text: str = ""
    """Greeting text; empty uses the catalog's generic custom-day greeting."""
    gift_points: int = Field(0, ge=0)


class GreetingRules(StrictModel):
    enabled: bool = True
    hour: int = Field(9, ge=0, le=23, description="local hour holiday greetings go out")
    minute: int = Field(0, ge=0, le=59)
    gift_points: dict[str, int] = Field(default_factory=dict)
    """Holiday id -> points given to every member with the greeting (e.g. {spring_festival: 88})."""
    texts: dict[str, str] = Field(default_factory=dict)
    """Holiday id -> greeting text, overriding the catalog."""
    silenced: list[str] = Field(default_factory=list)
    """Holiday ids never greeted (staff can add more with /greetings off). Not named `off`: YAML reads that as false."""
    custom: list[CustomDay] = Field(default_factory=list)


class BirthdayRules(StrictModel):
    enabled: bool = True
    hour: int = Field(9, ge=0, le=23)
    gift_points: int = Field(0, ge=0, description="points given on the birthday, once a year (0: none)")
    leap_day_on: str = Field(
        "02-28", pattern=r"^(02-28|03-01)$", description="when 29 Feb birthdays are greeted in other years"
    )
    min_days_before: int = Field(30, ge=0, description="a birthday set or changed fewer days before earns no gift")


class SegmentRules(StrictModel):
    """RFM segments from recorded purchases (defaults from one shop's playbook)."""

    new_days: int = Field(45, ge=1, description="new: first (only) purchase within this many days")
    active_days: int = Field(45, ge=1, description="active: 2+ purchases, the last within this many days")
    dormant_high_days: tuple[int, int] = (90, 180)
    dormant_low_days: tuple[int, int] = (180, 360)
    lost_days: int = Field(360, ge=1, description="lost: no purchase for more than this many days")
    winback: bool = False
    """Send care messages when a member enters dormant-high or dormant-low (once per entry)."""


class ReferralRules(StrictModel):
    referrer_points: int = Field(100, ge=0)
    referred_points: int = Field(50, ge=0)
    monthly_cap: int = Field(10, ge=0, description="rewarded referrals per referrer per month")


class BindingRules(StrictModel):
    """Linking accounts (/bind): how long a code lasts and how many wrong codes are tolerated."""

    code_minutes: int = Field(5, ge=1, le=60, description="a binding code is valid this long")
    failures_per_member: int = Field(5, ge=1, description="wrong codes one member may send per window")
    failures_overall: int = Field(50, ge=1, description="wrong codes all members together may send per window")
    window_minutes: int = Field(15, ge=1, description="the window the wrong codes are counted in")


class TierReviewRules(StrictModel):
    """The yearly tier review (off by default): on `month`/`day` each member keeps their tier only if the points
    earned in the 12 months before reach it; otherwise they move to the tier those points reach."""

    enabled: bool = False
    month: int = Field(1, ge=1, le=12)
    day: int = Field(1, ge=1, le=28, description="day of the month (at most 28, so every year has it)")
    hour: int = Field(1, ge=0, le=23)


class ReportRules(StrictModel):
    weekly: bool = False
    """Send the weekly report chart to the staff chat."""
    day: str = Field("mon", description="cron day_of_week")
    hour: int = Field(9, ge=0, le=23)


class RuleSections(StrictModel):
    """The rule sections of the configuration, validated together (tier ids used by sales and group buys)."""

    checkin: CheckinRules = Field(default_factory=CheckinRules)
    points: PointsRules = Field(default_factory=PointsRules)
    tiers: list[Tier] = Field(default_factory=default_tiers)
    tier_review: TierReviewRules = Field(default_factory=TierReviewRules)
    events: EventRules = Field(default_factory=EventRules)
    sales: SaleRules = Field(default_factory=SaleRules)
    groupbuy: GroupBuyRules = Field(default_factory=GroupBuyRules)
    feedback: FeedbackRules = Field(default_factory=FeedbackRules)
    polls: PollRules = Field(default_factory=PollRules)
    greetings: GreetingRules = Field(default_factory=GreetingRules)
    birthdays: BirthdayRules = Field(default_factory=BirthdayRules)
    segments: SegmentRules = Field(default_factory=SegmentRules)
    referrals: ReferralRules = Field(default_factory=ReferralRules)
    binding: BindingRules = Field(default_factory=BindingRules)
    reports: ReportRules = Field(default_factory=ReportRules)

    @field_validator("tiers")
    @classmethod
    def _tiers_ordered(cls, tiers: list[Tier]) -> list[Tier]:
        if not tiers:
            raise ValueError("at least one tier is needed")
        tiers = sorted(tiers, key=lambda t: t.min_points)
        if tiers[0].min_points != 0:
            raise ValueError("the lowest tier must start at 0 points")
        ids = [t.id for t in tiers]
        if len(set(ids)) != len(ids):
            raise ValueError("tier ids must be unique")
        mins = [t.min_points for t in tiers]
        if len(set(mins)) != len(mins):
            raise ValueError("two tiers cannot start at the same number of points")
        return tiers

    @model_validator(mode="after")
    def _known_tier_ids(self) -> Self:
        known = {t.id for t in self.tiers}
        unknown = (set(self.sales.early_access_minutes) | set(self.groupbuy.no_deposit_tiers)) - known
        if unknown:
            raise ValueError(f"unknown tier ids {sorted(unknown)} in sales or groupbuy (tiers are {sorted(known)})")
        return self


class Rules(RuleSections):
    """What handlers read (`deps.rules`): the rule sections and the tier arithmetic, nothing secret."""

    def tier_by_id(self, tier_id: str) -> Tier | None:
        return next((t for t in self.tiers if t.id == tier_id), None)

    def tier_range(self, tier: Tier) -> tuple[int, int | None]:
        """Lifetime earned points [low, high) of a tier; high is None for the top tier."""
        upcoming = self.next_tier(tier.min_points)
        return tier.min_points, upcoming.min_points if upcoming else None

    def tier_for(self, earned: int) -> Tier:
        current = self.tiers[0]
        for tier in self.tiers:
            if earned >= tier.min_points:
                current = tier
        return current

    def next_tier(self, earned: int) -> Tier | None:
        for tier in self.tiers:
            if tier.min_points > earned:
                return tier
        return None
