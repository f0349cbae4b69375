"""`vipbot doctor` against the fake Bot API: every check's line, each failure named with its fix, and the exit
code (1 on any failure, 0 with warnings only). The doctor only looks: no webhook set, no table made."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import sys
import types
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bot.app import doctor
from bot.app.checks import Finding, Outcome
from bot.app.cli import main
from bot.app.config import Settings
from handlers.shared import charts
from tests import pg
from tests.conftest import storage_for
from tests.fakes.bot_api import BOT_ID, BOT_USERNAME, FakeBotApi

ROOT = Path(__file__).resolve().parent.parent
GROUP = -1001234567890
STAFF_GROUP = -1009876543210
OWNER, CASHIER = 111111, 222222
HOOK = "https://shop.example/telegram"
NEWEST = max(int(p.name[:4]) for p in (ROOT / "storage" / "migrations").glob("[0-9][0-9][0-9][0-9]_*.sql"))
READ_ONLY_METHODS = {"getMe", "getWebhookInfo", "getChat", "getChatMember"}


@pytest.fixture(autouse=True)
def a_cjk_font(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's fonts do not decide these tests (the font check has its own)."""
    monkeypatch.setattr(charts, "cjk_font", lambda: "Noto Sans CJK SC")


@pytest.fixture
async def api() -> AsyncIterator[FakeBotApi]:
    fake = await FakeBotApi().start()
    fake.add_group(GROUP, "Tea Shop VIP", bot="administrator")
    fake.add_group(STAFF_GROUP, "Tea Shop Staff")
    fake.add_user(OWNER, "Mei", "mei_tea")
    fake.add_user(CASHIER, "Jun")
    fake.webhook_url = HOOK
    try:
        yield fake
    finally:
        await fake.stop()


def shop(api: FakeBotApi, db: Path, **telegram: Any) -> dict[str, Any]:
    """A shop's configuration on the fake: a VIP group where the bot is admin, two staff, a staff group."""
    return {
        "locale": "en",
        "storage": storage_for(db),
        "telegram": {"token": api.token, "base_url": api.base_url, "groups": [GROUP],
                     "webhook": {"url": HOOK, "secret_token": "s3cret-Token_1"}, **telegram},
        "staff": {"telegram": {OWNER: "owner", CASHIER: "cashier"}, "telegram_chat": STAFF_GROUP},
    }  # fmt: skip


def migrated(tmp_path: Path, migrated_db: Path) -> Path:
    path = tmp_path / "data" / "vipbot.db"
    path.parent.mkdir()
    shutil.copy(migrated_db, path)
    return path


async def findings(data: dict[str, Any]) -> dict[str, Finding]:
    found = await doctor.run(Settings(**data))
    named = {f.name: f for f in found}
    assert len(named) == len(found), [f.name for f in found]  # each check has its own name
    return named


def assert_outcome(found: dict[str, Finding], name: str, outcome: Outcome, *words: str) -> Finding:
    assert name in found, "\n".join(doctor.line(f) for f in found.values())
    finding = found[name]
    assert finding.outcome is outcome, finding
    for word in words:
        assert word in finding.detail + " " + finding.fix, (word, finding)
    if outcome is not Outcome.OK:
        assert finding.fix, finding
    return finding


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- everything right, through the command line ------------------------------------------------------
async def test_all_good_through_the_cli_prints_one_ok_line_per_check_and_exits_0(
    api: FakeBotApi, tmp_path: Path, migrated_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = migrated(tmp_path, migrated_db)
    before = db.read_bytes()
    storage = storage_for(db)
    where = f"PostgreSQL {pg.redacted(storage['url'])}" if "url" in storage else str(db)
    config = tmp_path / "config.yaml"
    config.write_text(json.dumps(shop(api, db)), encoding="utf-8")  # JSON is YAML
    code = await _in_thread(main, ["doctor", "--config", str(config)])
    out = capsys.readouterr().out
    lines = out.splitlines()
    print(out, file=sys.stderr)  # shown with -s: the README's sample
    assert code == 0, out
    assert lines[-1] == "All 10 checks passed."
    checks = lines[:-1]
    assert len(checks) == 10 and all(line.startswith("✔ ") for line in checks), out
    expect = [
        f"✔ configuration  {config} loads (en, Asia/Shanghai)",
        f"✔ database  {where} is writable; schema version {NEWEST}, up to date",
        "✔ chart font  Noto Sans CJK SC",
        f"✔ telegram token  @{BOT_USERNAME} works",
        f"✔ telegram webhook  registered at {HOOK}",
        f"✔ group {GROUP}  “Tea Shop VIP”: the bot is an admin",
        f"✔ staff {OWNER}  Mei (@mei_tea), owner",
        f"✔ staff {CASHIER}  Jun, cashier",
        f"✔ staff chat {STAFF_GROUP}  “Tea Shop Staff”: staff notices go there",
        "✔ wechat  not configured",
    ]
    for line, start in zip(checks, expect, strict=True):
        assert line.startswith(start), (line, start)
    assert "secret_token cannot be read back" in checks[4]  # said, not pretended
    assert api.token not in out
    assert {c.method for c in api.calls} <= READ_ONLY_METHODS  # nothing registered, deleted or sent
    assert db.read_bytes() == before  # nothing written


async def _in_thread(fn: Any, *args: Any) -> Any:
    """The CLI runs its own event loop (asyncio.run), so it runs on a thread while the fake serves on this one."""
    import asyncio

    return await asyncio.to_thread(fn, *args)


def test_a_configuration_that_does_not_load_is_a_failure_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("storage:\n  readers: 0\n", encoding="utf-8")
    assert main(["doctor", "--config", str(config)]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"✘ configuration  {config}: 1 invalid setting(s):")
    assert "storage.readers" in out and "Traceback" not in out
    assert out.splitlines()[-1] == "1 failed (of 1 check)."


def test_a_missing_config_file_named_with_config_fails() -> None:
    settings, loaded = doctor.load("/nonexistent/config.yaml")
    assert settings is None and loaded.outcome is Outcome.FAIL and "does not exist" in loaded.detail
    assert "--config" in loaded.fix


# --- the token --------------------------------------------------------------------------------------------
async def test_a_wrong_token_fails_and_the_other_telegram_checks_are_not_run(
    api: FakeBotApi, tmp_path: Path
) -> None:
    found = await findings(shop(api, tmp_path / "v.db", token="123456:WRONG-TOKEN"))
    token = assert_outcome(found, "telegram token", Outcome.FAIL, "Unauthorized", "BotFather", "TELEGRAM_BOT_TOKEN")
    assert "WRONG-TOKEN" not in token.detail + token.fix  # the token is never shown
    assert not any(name.startswith(("group", "staff", "telegram webhook")) for name in found)
    assert doctor.exit_code(list(found.values())) == 1


async def test_a_token_of_the_wrong_shape_gets_not_found(api: FakeBotApi, tmp_path: Path) -> None:
    found = await findings(shop(api, tmp_path / "v.db", token="not-a-token"))
    assert_outcome(found, "telegram token", Outcome.FAIL, "Not Found", "must end in /bot")


async def test_telegram_out_of_reach_says_to_set_a_proxy_or_base_url(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}/bot"  # nothing listens there
    data = {"storage": storage_for(tmp_path / "v.db"), "telegram": {"token": "123:abc", "base_url": dead}}
    found = await findings(data)
    assert_outcome(found, "telegram connection", Outcome.FAIL, "cannot reach 127.0.0.1", "telegram.proxy",
                   "telegram.base_url")  # fmt: skip
    assert "telegram token" not in found


async def test_calls_go_through_the_configured_proxy(api: FakeBotApi, tmp_path: Path) -> None:
    proxy = f"http://shop:pa55word@127.0.0.1:{free_port()}"  # no proxy listens there; the Bot API itself is up
    found = await findings(shop(api, tmp_path / "v.db", proxy=proxy))
    failed = assert_outcome(found, "telegram connection", Outcome.FAIL, "cannot reach", "telegram.proxy (127.0.0.1:")
    assert "pa55word" not in failed.detail + failed.fix
    assert not api.calls  # nothing reached the Bot API but through the proxy


# --- the webhook ------------------------------------------------------------------------------------------
async def test_a_webhook_registered_for_another_url_fails(api: FakeBotApi, tmp_path: Path) -> None:
    api.webhook_url = "https://old-shop.example/telegram"
    found = await findings(shop(api, tmp_path / "v.db"))
    assert_outcome(found, "telegram webhook", Outcome.FAIL, "https://old-shop.example/telegram", HOOK, "restart")


async def test_no_webhook_registered_yet_is_a_warning(api: FakeBotApi, tmp_path: Path) -> None:
    api.webhook_url = ""
    found = await findings(shop(api, tmp_path / "v.db"))
    assert_outcome(found, "telegram webhook", Outcome.WARN, "none registered yet", "vipbot run")
    assert doctor.exit_code(list(found.values())) == 0


async def test_the_last_delivery_error_is_reported(api: FakeBotApi, tmp_path: Path) -> None:
    api.webhook_error = (1_767_225_600, "Wrong response from the webhook: 502 Bad Gateway")
    found = await findings(shop(api, tmp_path / "v.db"))
    assert_outcome(found, "telegram webhook", Outcome.WARN, "502 Bad Gateway", "2026-01-01 08:00", "reverse proxy")


async def test_a_webhook_url_telegram_would_refuse_fails_before_asking(api: FakeBotApi, tmp_path: Path) -> None:
    data = shop(api, tmp_path / "v.db")
    data["telegram"]["webhook"]["url"] = "https://shop.example:8080/telegram"
    found = await findings(data)
    assert_outcome(found, "telegram webhook", Outcome.FAIL, "port 8080", "443")


async def test_polling_with_a_webhook_registered_warns_that_start_deletes_it(api: FakeBotApi, tmp_path: Path) -> None:
    data = shop(api, tmp_path / "v.db")
    del data["telegram"]["webhook"]
    found = await findings(data)
    assert_outcome(found, "telegram webhook", Outcome.WARN, HOOK, "deletes it at start")
    api.webhook_url = ""
    assert_outcome(await findings(data), "telegram webhook", Outcome.OK, "polls")


# --- the groups -------------------------------------------------------------------------------------------
async def test_a_group_telegram_does_not_know_fails(api: FakeBotApi, tmp_path: Path) -> None:
    found = await findings(shop(api, tmp_path / "v.db", groups=[GROUP, -100555]))
    assert_outcome(found, f"group {GROUP}", Outcome.OK)
    assert_outcome(found, "group -100555", Outcome.FAIL, "hat not found", "add the bot to the group")


async def test_bot_not_admin_with_privacy_on_fails_with_the_botfather_fix(api: FakeBotApi, tmp_path: Path) -> None:
    found = await findings(shop(api, tmp_path / "v.db", groups=[GROUP, STAFF_GROUP]))
    assert_outcome(found, f"group {GROUP}", Outcome.OK, "admin")
    assert_outcome(found, f"group {STAFF_GROUP}", Outcome.FAIL, "not an admin", "privacy mode is on", "签到",
                   "/setprivacy", "Disable", "make the bot an admin")  # fmt: skip
    assert doctor.exit_code(list(found.values())) == 1


async def test_privacy_off_is_enough_without_admin_rights(api: FakeBotApi, tmp_path: Path) -> None:
    api.privacy = False  # BotFather /setprivacy → Disable
    found = await findings(shop(api, tmp_path / "v.db", groups=[STAFF_GROUP]))
    assert_outcome(found, f"group {STAFF_GROUP}", Outcome.OK, "privacy mode is off")
    assert_outcome(found, "telegram token", Outcome.OK, "privacy mode off")


async def test_a_group_upgraded_to_a_supergroup_names_the_new_id(api: FakeBotApi, tmp_path: Path) -> None:
    api.migrated[-4001] = GROUP
    found = await findings(shop(api, tmp_path / "v.db", groups=[-4001]))
    assert_outcome(found, "group -4001", Outcome.FAIL, f"replace -4001 with {GROUP}")


async def test_a_group_that_removed_the_bot_fails(api: FakeBotApi, tmp_path: Path) -> None:
    api.add_group(-1001005550001, "Old VIP", bot="kicked")
    api.add_group(-1001005550002, "Muted", bot="restricted")
    found = await findings(shop(api, tmp_path / "v.db", groups=[-1001005550001, -1001005550002]))
    assert_outcome(found, "group -1001005550001", Outcome.FAIL, "kicked", "add the bot")
    assert_outcome(found, "group -1001005550002", Outcome.FAIL, "may not send messages")


async def test_no_group_listed_is_a_warning_saying_how_to_find_the_id(api: FakeBotApi, tmp_path: Path) -> None:
    found = await findings(shop(api, tmp_path / "v.db", groups=[]))
    assert_outcome(found, "telegram groups", Outcome.WARN, "private chats only", "telegram.groups")


# --- the staff --------------------------------------------------------------------------------------------
async def test_a_staff_id_that_never_started_the_bot_is_a_warning(api: FakeBotApi, tmp_path: Path) -> None:
    data = shop(api, tmp_path / "v.db")
    data["staff"]["telegram"][333333] = "manager"
    found = await findings(data)
    assert_outcome(found, f"staff {OWNER}", Outcome.OK, "owner")
    assert_outcome(found, "staff 333333", Outcome.WARN, "manager", "never started the bot", f"@{BOT_USERNAME}",
                   "Start")  # fmt: skip
    assert doctor.exit_code(list(found.values())) == 0


async def test_an_unreachable_staff_chat_fails(api: FakeBotApi, tmp_path: Path) -> None:
    data = shop(api, tmp_path / "v.db")
    data["staff"]["telegram_chat"] = -1007770000
    found = await findings(data)
    assert_outcome(found, "staff chat -1007770000", Outcome.FAIL, "hat not found", "add the bot to that group")


async def test_a_private_staff_chat_resolves_to_the_person(api: FakeBotApi, tmp_path: Path) -> None:
    data = shop(api, tmp_path / "v.db")
    data["staff"]["telegram_chat"] = OWNER
    assert_outcome(await findings(data), f"staff chat {OWNER}", Outcome.OK, "Mei (@mei_tea)")


# --- the database -----------------------------------------------------------------------------------------
@pytest.mark.sqlite_only("the doctor's checks of the SQLite file")
async def test_a_database_under_a_regular_file_fails(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("not a folder")
    found = await findings({"storage": {"path": str(blocker / "vipbot.db")}})
    assert_outcome(found, "database", Outcome.FAIL, f"{blocker} is a file", "storage.path")


@pytest.mark.sqlite_only("the doctor's checks of the SQLite file")
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
async def test_a_read_only_database_folder_fails(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        found = await findings({"storage": {"path": str(folder / "vipbot.db")}})
    finally:
        folder.chmod(0o700)
    assert_outcome(found, "database", Outcome.FAIL, "not writable", "writable for the user that runs the bot")


@pytest.mark.sqlite_only("the doctor's checks of the SQLite file")
async def test_a_missing_database_in_a_writable_folder_is_fine_and_not_created(tmp_path: Path) -> None:
    path = tmp_path / "vipbot.db"
    assert_outcome(await findings({"storage": {"path": str(path)}}), "database", Outcome.OK, "first start")
    assert not path.exists()
    assert sorted(os.listdir(tmp_path)) == []  # the probe file is gone too


@pytest.mark.sqlite_only("the doctor's checks of the SQLite file")
async def test_a_file_that_is_not_a_database_fails(tmp_path: Path) -> None:
    path = tmp_path / "vipbot.db"
    path.write_text("customers,points\n")
    found = await findings({"storage": {"path": str(path)}})
    assert_outcome(found, "database", Outcome.FAIL, "not an SQLite database")


@pytest.mark.sqlite_only("the doctor's checks of the SQLite file")
async def test_a_database_from_a_newer_vipbot_fails(tmp_path: Path, migrated_db: Path) -> None:
    path = migrated(tmp_path, migrated_db)
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version(version, name) VALUES (?, 'from the future')", (NEWEST + 1,))
    found = await findings({"storage": {"path": str(path)}})
    assert_outcome(found, "database", Outcome.FAIL, f"schema version {NEWEST + 1}", "upgrade vipbot")


@pytest.mark.sqlite_only("the doctor's checks of the SQLite file")
async def test_an_older_schema_says_migrations_run_at_the_next_start(tmp_path: Path, migrated_db: Path) -> None:
    path = migrated(tmp_path, migrated_db)
    with sqlite3.connect(path) as conn:
        conn.execute("DELETE FROM schema_version WHERE version = ?", (NEWEST,))
    found = await findings({"storage": {"path": str(path)}})
    assert_outcome(found, "database", Outcome.OK, f"schema version {NEWEST - 1}", "1 newer migration", "backup")


@pytest.mark.sqlite_only("the doctor's checks of the SQLite file")
async def test_a_database_locked_by_another_writer_is_a_warning(
    tmp_path: Path, migrated_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(doctor, "LOCK_WAIT_SECONDS", 0)  # give up at once instead of waiting
    path = migrated(tmp_path, migrated_db)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        found = await findings({"storage": {"path": str(path)}})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert_outcome(found, "database", Outcome.WARN, "write lock")


# --- the font, WeChat, no channel ----------------------------------------------------------------------
async def test_no_cjk_font_fails_with_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(charts, "cjk_font", lambda: None)
    found = await findings({"storage": storage_for(tmp_path / "v.db")})
    assert_outcome(found, "chart font", Outcome.FAIL, "#1", "fonts-noto-cjk", "mplfonts")
    assert doctor.exit_code(list(found.values())) == 1


async def test_no_channel_configured_warns_that_run_opens_the_console(tmp_path: Path) -> None:
    found = await findings({"storage": storage_for(tmp_path / "v.db")})
    assert_outcome(found, "channels", Outcome.WARN, "console", "TELEGRAM_BOT_TOKEN")
    assert list(found) == ["database", "chart font", "channels"]


async def test_wechat_findings_come_from_the_wechat_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Settings] = []

    async def checks(settings: Settings) -> list[Finding]:
        seen.append(settings)
        return [Finding.fail("wechat access token", "errcode 40164: invalid ip", "add it to the IP whitelist")]

    import bot.wechat

    module = types.ModuleType("bot.wechat.doctor")
    module.checks = checks  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bot.wechat.doctor", module)
    monkeypatch.setattr(bot.wechat, "doctor", module, raising=False)
    settings = Settings(storage=storage_for(tmp_path / "v.db"), wechat={"app_id": "wx1", "token": "t"})
    found = {f.name: f for f in await doctor.run(settings)}
    assert seen == [settings]
    assert_outcome(found, "wechat access token", Outcome.FAIL, "40164")
    assert doctor.exit_code(list(found.values())) == 1


async def test_a_check_that_raises_is_a_failure_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> str:
        raise RuntimeError("font cache is corrupt")

    monkeypatch.setattr(charts, "cjk_font", broken)
    found = await findings({"storage": storage_for(tmp_path / "v.db")})
    assert_outcome(found, "chart font", Outcome.FAIL, "font cache is corrupt")


async def test_a_channel_check_that_raises_is_one_line_without_the_token(
    api: FakeBotApi, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.telegram import doctor as telegram_doctor

    async def broken(settings: Settings) -> list[Finding]:
        raise ValueError(f"unexpected answer for {settings.telegram_token}")

    monkeypatch.setattr(telegram_doctor, "checks", broken)
    found = await findings(shop(api, tmp_path / "v.db"))
    failed = assert_outcome(found, "telegram", Outcome.FAIL, "ValueError: unexpected answer for <token>")
    assert api.token not in failed.detail
    assert "wechat" in found  # the checks after it still ran


# --- output -----------------------------------------------------------------------------------------------
def test_lines_show_the_fix_after_an_arrow_and_fall_back_to_plain_marks() -> None:
    failed = Finding.fail("group -100123", "the bot is not an admin", "make the bot an admin")
    assert doctor.line(failed) == "✘ group -100123  the bot is not an admin → make the bot an admin"
    assert doctor.line(Finding.ok("telegram token", "@shop_bot works")) == "✔ telegram token  @shop_bot works"

    class Latin1:
        encoding = "latin-1"
        text = ""

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            pass

    out = Latin1()
    printer = doctor._Printer(out)  # type: ignore[arg-type]
    printer(failed)
    assert out.text == "XX group -100123  the bot is not an admin -> make the bot an admin\n"


# --- the fake answers these calls as Telegram does -----------------------------------------------------
async def test_the_fake_bot_api_answers_the_doctors_calls_like_telegram(api: FakeBotApi) -> None:
    async with httpx.AsyncClient() as client:

        async def call(method: str, token: str = api.token, **params: Any) -> tuple[int, dict[str, Any]]:
            response = await client.post(f"{api.base_url}{token}/{method}", data=params)
            return response.status_code, response.json()

        assert await call("getMe", token="123:nope") == (401, {"ok": False, "error_code": 401,
                                                                "description": "Unauthorized"})  # fmt: skip
        assert await call("getMe", token="nope") == (404, {"ok": False, "error_code": 404, "description": "Not Found"})
        status, body = await call("getChat", chat_id=-100999)
        assert (status, body) == (400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
        status, body = await call("getChatMember", chat_id=GROUP, user_id=BOT_ID)
        assert status == 200 and body["result"]["status"] == "administrator"
        status, body = await call("getUpdates")
        assert status == 409 and body["description"].startswith("Conflict: can't use getUpdates method while webhook")
        status, body = await call("setWebhook", url="http://shop.example/telegram")
        assert status == 400 and "HTTPS URL must be provided" in body["description"]
        assert await call("deleteWebhook") == (200, {"ok": True, "result": True, "description": "Webhook was deleted"})
        status, body = await call("getWebhookInfo")
        assert body["result"] == {"url": "", "has_custom_certificate": False, "pending_update_count": 0}
        assert (await call("getUpdates"))[0] == 200
