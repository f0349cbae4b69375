"""The programme's rules as configuration: check-in points, purchase earn rate and VIP tiers.

`bot.config` embeds these models in the full settings; handlers read only this part.
"""

from __future__ import annotations

from decimal import Decimal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class StrictModel(BaseModel):
    """A settings section that rejects unknown keys, so a typo in config.yaml is reported."""

    model_config = ConfigDict(extra="forbid")


class CheckinRules(StrictModel):
    base_points: int = Field(10, ge=0, description="points for every check-in")
    streak_bonus: int = Field(2, ge=0, description="extra points per consecutive day after the first")
    streak_bonus_cap: int = Field(20, ge=0, description="the streak bonus never exceeds this")
    rollover_hour: int = Field(0, ge=0, le=23, description="local hour at which a new business day starts")

    def points_for(self, streak: int) -> int:
        return self.base_points + min(self.streak_bonus * max(streak - 1, 0), self.streak_bonus_cap)


class Tier(StrictModel):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    min_points: int = Field(ge=0)
    name: str | None = None
    """Display name; when empty the message catalog's ``tier.<id>`` is used."""


def default_tiers() -> list[Tier]:
    return [
        Tier(id="gold", min_points=0),
        Tier(id="diamond", min_points=600),
        Tier(id="black", min_points=1800),
    ]


class PointsRules(StrictModel):
    per_yuan: Decimal = Field(Decimal(1), ge=0, description="points earned per yuan of a recorded purchase")
    max_award: int = Field(100_000, gt=0, description="largest single /award or /deduct")


class Rules(StrictModel):
    checkin: CheckinRules = Field(default_factory=CheckinRules)
    points: PointsRules = Field(default_factory=PointsRules)
    tiers: list[Tier] = Field(default_factory=default_tiers)

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
