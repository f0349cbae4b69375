"""Configuration: defaults, the YAML file, environment overrides and clear errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from bot.app.config import ConfigError, Settings, load_settings
from bot.app.runtime import Runtime

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_shipped_config_is_valid_and_matches_the_defaults() -> None:
    settings = load_settings(ROOT / "config.yaml")
    assert settings.timezone == "Asia/Shanghai" and settings.locale == "zh_CN"
    assert settings.storage.path == "data/vipbot.db"
    assert settings.telegram.base_url == "https://api.telegram.org/bot"
    assert [(t.id, t.min_points) for t in settings.tiers] == [("gold", 0), ("diamond", 600), ("black", 1800)]
    assert settings.checkin.points_for(1) == 10 and settings.checkin.points_for(30) == 30
    assert settings.telegram_token == ""
    assert settings.model_dump() == Settings(storage={"path": "data/vipbot.db"}).model_dump()


def test_environment_overrides_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "storage:\n  path: a.db\ntelegram:\n  base_url: http://x/bot\n  groups: [-1001]\n")
    monkeypatch.setenv("VIPBOT_STORAGE__PATH", "b.db")
    monkeypatch.setenv("VIPBOT_TELEGRAM__BASE_URL", "http://127.0.0.1:9/bot")
    monkeypatch.setenv("VIPBOT_CHECKIN__BASE_POINTS", "7")
    settings = load_settings(path)
    assert settings.storage.path == "b.db"
    assert settings.telegram.base_url == "http://127.0.0.1:9/bot"
    assert settings.telegram.groups == [-1001]  # untouched keys keep the file's value
    assert settings.checkin.base_points == 7


def test_token_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "telegram:\n  token: ''\n")
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123:abc")
    assert load_settings(path).telegram_token == "123:abc"
    monkeypatch.setenv("VIPBOT_TELEGRAM__TOKEN", "456:def")
    assert load_settings(path).telegram_token == "456:def"
    assert "456" not in repr(load_settings(path))  # secrets are not printed


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("timezone: Mars/Olympus\n", "timezone: Value error, unknown time zone 'Mars/Olympus'"),
        ("locale: fr\n", "locale: Input should be 'zh_CN' or 'en'"),
        ("telegram:\n  groups: [abc]\n", "telegram.groups.0"),
        ("checkin:\n  rollover_hour: 25\n", "checkin.rollover_hour"),
        ("tiers:\n  - {id: gold, min_points: 10}\n", "the lowest tier must start at 0 points"),
        ("storage:\n  paht: x.db\n", "storage.paht: Extra inputs are not permitted"),
        ("storage:\n  path: ':memory:'\n", "storage.path: Value error, must be a file path"),
        ("messages:\n  nope.key: hi\n", "unknown message keys in overrides: nope.key"),
        ("- a\n- b\n", "the top level must be a mapping"),
        ("polls:\n  survey:\n    day: someday\n", "is not a cron day"),
        ("timezone: [\n", "not valid YAML"),
    ],
)
def test_bad_values_get_a_clear_message(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(write(tmp_path, text))
    assert message in str(err.value)


def test_a_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.yaml")


def test_message_overrides_replace_catalog_texts(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "locale: en\nmessages:\n  checkin.summary: tap in daily\n"))
    assert settings.messages == {"checkin.summary": "tap in daily"}


def _secrets_and_sections(value: Any, path: str = "rules") -> tuple[list[str], set[str]]:
    """Every secret reachable from `value` (by path) and every field name on the way."""
    if isinstance(value, SecretStr):
        return [path], set()
    found: list[str] = []
    names: set[str] = set()
    children: list[tuple[str, Any]] = []
    if isinstance(value, BaseModel):
        names |= set(type(value).model_fields)
        children = [(f"{path}.{name}", getattr(value, name)) for name in type(value).model_fields]
    elif isinstance(value, dict):
        children = [(f"{path}[{key!r}]", item) for key, item in value.items()]
    elif isinstance(value, list | tuple):
        children = [(f"{path}[{i}]", item) for i, item in enumerate(value)]
    for where, child in children:
        more, seen = _secrets_and_sections(child, where)
        found += more
        names |= seen
    return found, names


async def test_handlers_get_the_rules_without_any_secret(tmp_path: Path) -> None:
    settings = Settings(
        storage={"path": str(tmp_path / "r.db")},
        telegram={"token": "123:abc", "webhook": {"url": "https://shop.example/telegram"}},
        wechat={"app_id": "wx1", "token": "wtoken", "app_secret": "wsecret"},
        checkin={"base_points": 7},
        tiers=[{"id": "gold", "min_points": 0}, {"id": "vip", "min_points": 50}],
        sales={"early_access_minutes": {"vip": 3}},
        groupbuy={"no_deposit_tiers": ["vip"]},
    )
    runtime = await Runtime.open(settings)
    try:
        rules = runtime.deps.rules
        secrets, names = _secrets_and_sections(rules)
        assert secrets == []
        for section in ("telegram", "wechat", "staff", "storage", "http", "delivery", "console", "messages"):
            assert not hasattr(rules, section), section
        assert not {"token", "secret_token", "app_secret", "encoding_aes_key"} & names
        assert "123:abc" not in repr(rules) and "wsecret" not in repr(rules)
        # Every rule section the handlers read is there, with the configured values.
        assert rules.checkin.base_points == 7 and rules.checkin.points_for(2) == 9
        assert [tier.id for tier in rules.tiers] == ["gold", "vip"] and rules.tier_for(60).id == "vip"
        assert rules.sales.early_access_minutes == {"vip": 3} and rules.groupbuy.no_deposit_tiers == ["vip"]
        for section in ("points", "events", "feedback", "polls", "greetings", "birthdays", "segments",
                        "referrals", "binding", "reports"):
            assert getattr(rules, section) == getattr(Settings(), section), section
    finally:
        await runtime.close()


# --- storage.url: SQLite or PostgreSQL ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("storage", "engine", "sqlite_path"),
    [
        ({}, "sqlite", "data/vipbot.db"),
        ({"path": "x/y.db"}, "sqlite", "x/y.db"),
        ({"url": "sqlite:///data/shop.db"}, "sqlite", "data/shop.db"),
        ({"url": "sqlite:////srv/vipbot/shop.db"}, "sqlite", "/srv/vipbot/shop.db"),
        ({"url": "sqlite:///a/b.db", "path": "a/./b.db"}, "sqlite", "a/b.db"),  # the same file twice is fine
        ({"url": "postgresql://vipbot:pw@db.local:5432/vipbot"}, "postgresql", "data/vipbot.db"),
        ({"url": "postgres://vipbot@127.0.0.1/vipbot"}, "postgresql", "data/vipbot.db"),
        ({"url": "  PostgreSQL://h/vipbot "}, "postgresql", "data/vipbot.db"),
    ],
)
def test_storage_url_selects_the_engine(storage: dict[str, str], engine: str, sqlite_path: str) -> None:
    settings = Settings(storage=storage).storage
    assert settings.engine == engine and settings.sqlite_path == sqlite_path


def test_storage_url_from_the_environment_wins_over_the_files_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "storage:\n  path: data/vipbot.db\n  writers: 3\n")  # as the shipped config.yaml
    monkeypatch.setenv("VIPBOT_STORAGE__URL", "postgresql://vipbot:s3cret@127.0.0.1:5432/shop")
    storage = load_settings(path).storage
    assert storage.engine == "postgresql" and storage.writers == 3
    assert storage.url == "postgresql://vipbot:s3cret@127.0.0.1:5432/shop"
    assert storage.where == "postgresql://vipbot:***@127.0.0.1:5432/shop"  # for messages: no password


def test_storage_writers_default_to_eight() -> None:
    assert Settings().storage.writers == 8


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("storage:\n  url: mysql://h/x\n", "storage.url: Value error, unknown scheme 'mysql'"),
        ("storage:\n  url: data/vipbot.db\n", "storage.url: Value error, must be a URL"),
        ("storage:\n  url: sqlite://host/x.db\n", "storage.url: Value error, a sqlite URL has no host"),
        ("storage:\n  url: 'sqlite:///:memory:'\n", "storage.url: Value error, must name a database file"),
        ("storage:\n  url: 'sqlite:///x.db?mode=ro'\n", "storage.url: Value error, must name a database file"),
        ("storage:\n  url: 'postgresql://u:pw@h:port/x'\n", "storage.url: Value error, is not a valid PostgreSQL URL"),
        (
            "storage:\n  url: sqlite:///a.db\n  path: b.db\n",
            "storage: Value error, url names the SQLite file a.db but path names b.db: set only one of them",
        ),
        ("storage:\n  writers: 0\n", "storage.writers: Input should be greater than or equal to 1"),
    ],
)
def test_storage_url_errors_say_what_to_write(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_settings(write(tmp_path, text))
    assert message in str(error.value)
    assert "pw" not in str(error.value)


def test_without_a_configured_webhook_secret_every_worker_derives_the_same_one_from_the_token() -> None:
    hook = {"url": "https://shop.invalid/telegram"}
    first = Settings(telegram={"token": "123:AAA", "webhook": hook})
    second = Settings(telegram={"token": "123:AAA", "webhook": hook})
    other = Settings(telegram={"token": "456:BBB", "webhook": hook})
    secret = first.telegram.webhook.secret_token.get_secret_value()
    assert secret == second.telegram.webhook.secret_token.get_secret_value()  # two workers of one bot agree
    assert secret != other.telegram.webhook.secret_token.get_secret_value()
    assert "123:AAA" not in secret and len(secret) == 64 and all(c in "0123456789abcdef" for c in secret)
    assert first.telegram.webhook.secret_generated
    configured = Settings(telegram={"token": "123:AAA", "webhook": {**hook, "secret_token": "s3cret"}})
    assert configured.telegram.webhook.secret_token.get_secret_value() == "s3cret"
