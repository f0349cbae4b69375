"""/tiers (等级): every tier with its threshold and privileges (configured text, per locale, and what the rules
grant), the member's own tier and how far the next one is; older config files without privileges stay valid."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.app.config import Settings
from handlers.core.rules import RuleSections, Tier
from tests.conftest import ChatDriver, storage_for

TIERS = [
    {"id": "gold", "min_points": 0, "privileges": "Birthday gift\nFree gift wrapping"},
    {"id": "diamond", "min_points": 600, "privileges": {"en": "Free shipping", "zh_CN": "包邮"}},
    {"id": "black", "min_points": 1800, "name": "Black VIP", "privileges": {"zh_CN": "专属顾问"}},
]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(locale="en", storage=storage_for(tmp_path / "vip.db", loop_statement_ms=200), tiers=TIERS)


async def test_tiers_lists_thresholds_privileges_and_the_distance(chat: ChatDriver) -> None:
    await chat.say("alice", "/checkin")
    text = await chat.say("alice", "/tiers", group=False)
    lines = text.splitlines()
    assert lines[0] == "VIP tiers:"
    assert "👉 Gold: from 0 points (your tier)" in lines
    assert "· Diamond: from 600 points" in lines and "· Black VIP: from 1800 points" in lines
    gold, diamond, black = (lines.index(next(x for x in lines if name in x)) for name in ("Gold", "Diamond", "Black"))
    assert [x.strip() for x in lines[gold + 1 : diamond]] == ["Birthday gift", "Free gift wrapping"]
    assert [x.strip() for x in lines[diamond + 1 : black]] == [
        "Free shipping", "Flash sales: 5 minutes early access", "Group buys: no deposit",
    ]  # fmt: skip
    assert "专属顾问" in lines[black + 1]  # no English text configured: the shop's default language
    assert "You are Gold with 10 tier points." in lines
    assert "590 more points to Diamond" in lines
    assert "expire" not in text and "reviewed" not in text  # both rules are off by default


async def test_the_keyword_and_the_top_tier(chat: ChatDriver) -> None:
    await chat.say("alice", "hi")
    await chat.say("boss", "/award @alice 2000")
    text = await chat.say("alice", "等级")
    assert "👉 Black VIP: from 1800 points (your tier)" in text
    assert "You are Black VIP with 2000 tier points." in text
    assert "You are at the top tier. Thank you!" in text


def test_config_without_privileges_stays_valid() -> None:
    plain = [{"id": t["id"], "min_points": t["min_points"]} for t in TIERS]
    rules = RuleSections.model_validate({"tiers": plain})
    assert [t.privileges for t in rules.tiers] == ["", "", ""]
    mapped = Tier(id="gold", min_points=0, privileges={"en": "Gift", "zh_CN": "礼物"})
    assert (mapped.privileges_in("en"), mapped.privileges_in("zh_CN")) == ("Gift", "礼物")
    assert Tier(id="gold", min_points=0, privileges={"en": "Gift"}).privileges_in("zh_CN") == "Gift"
