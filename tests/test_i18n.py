"""Message catalogs: both locales carry the same keys with the same placeholders."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from handlers.core.i18n import LOCALES, Catalog, load_catalog, placeholders

ROOT = Path(__file__).resolve().parent.parent


def test_locales_have_the_same_keys_and_placeholders() -> None:
    zh, en = (load_catalog(locale) for locale in LOCALES)
    assert set(zh) == set(en)
    for key in zh:
        assert placeholders(zh[key]) == placeholders(en[key]), key


def test_every_key_used_in_code_exists() -> None:
    catalog = load_catalog("zh_CN")
    used: set[str] = set()
    for path in (ROOT / "handlers").rglob("*.py"):
        used |= set(re.findall(r"""t\(\s*"([a-z_]+\.[a-z_.]+)\"""", path.read_text(encoding="utf-8")))
        used |= set(re.findall(r"""Command\([^)]*?"([a-z_]+\.summary)\"""", path.read_text(encoding="utf-8")))
    assert used, "the scan found no keys"
    assert sorted(used - set(catalog)) == []


def test_zh_cn_is_the_default_and_formats() -> None:
    texts = Catalog("zh_CN")
    assert texts.n("checkin.done", 12, points=12, streak=2, balance=22, tier="金卡").startswith("签到成功！+12 积分")


def test_countdowns_say_minutes_hours_and_days_with_plural_forms() -> None:
    from datetime import timedelta
    from types import SimpleNamespace

    from handlers.shared.broadcast import countdown_text

    def say(locale: str, delta: timedelta) -> str:
        return countdown_text(SimpleNamespace(texts=Catalog(locale)), delta)  # type: ignore[arg-type]

    assert say("en", timedelta(minutes=2)) == "in 2 minutes"
    assert say("en", timedelta(seconds=50)) == "in 1 minute"
    assert say("zh_CN", timedelta(minutes=2)) == "还有 2 分钟"
    assert say("en", timedelta(minutes=100)) == "in 2 hours"
    assert say("en", timedelta(hours=1, minutes=20)) == "in 80 minutes"
    assert say("zh_CN", timedelta(hours=36)) == "还有 36 小时"  # not "2 days"
    assert say("en", timedelta(days=2, hours=23)) == "in 2 days"  # never more days than are left
    assert say("en", timedelta(days=5)) == "in 5 days"


def test_message_overrides_are_checked_against_the_texts_placeholders(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from pydantic import ValidationError

    from bot.app.cli import main
    from bot.app.config import Settings

    ok = Settings(messages={"checkin.done.other": "打卡 +{points}！", "common.apology": "抱歉 {{稍后再试}}"})
    assert Catalog("zh_CN", ok.messages).n("checkin.done", 2, points=5, streak=2, balance=7, tier="金卡") == "打卡 +5！"
    for text, why in (
        ("签到 +{pointz}", "{pointz}"),  # a typo: every check-in would fail
        ("签到 +{points", "brace"),
        ("签到 +{}", "{}"),
        ("签到 +{points:d}", "plain {points}"),
    ):
        with pytest.raises(ValidationError) as refused:
            Settings(messages={"checkin.done.other": text})
        assert "messages.checkin.done.other" in str(refused.value) and why in str(refused.value), text
    config = tmp_path / "config.yaml"
    config.write_text('messages:\n  checkin.already: "明天再来（{streek} 天）"\n', encoding="utf-8")
    assert main(["run", "--config", str(config)]) == 2  # refuses to start, saying which text and why
    error = capsys.readouterr().err
    assert "messages.checkin.already" in error and "{streek}" in error
