"""Running for real on PostgreSQL: `vipbot run` with `storage.url` against a fake Bot API, one poller per
database (a second process with Telegram polling refuses to start), the doctor's PostgreSQL check, and
backup/restore pointing at pg_dump.

Skipped when PostgreSQL cannot be reached (see tests/pg.py: VIPBOT_TEST_POSTGRES_URL)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import pytest

from bot.app import cli, doctor
from bot.app.checks import Outcome
from bot.app.config import Settings
from tests.fakes.bot_api import FakeBotApi, message_update, user
from tests.pg import pg_empty_url, pg_template, pg_url  # noqa: F401 - fixtures

ROOT = Path(__file__).resolve().parent.parent
GROUP = -100778
ALICE = user(111, "Alice", "alice")


def bot_env(api: FakeBotApi, url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("VIPBOT_")}
    return env | {
        "TELEGRAM_BOT_TOKEN": api.token,
        "VIPBOT_TELEGRAM__BASE_URL": api.base_url,
        "VIPBOT_TELEGRAM__GROUPS": json.dumps([GROUP]),
        "VIPBOT_TELEGRAM__COMMAND_MENUS": "false",
        "VIPBOT_STORAGE__URL": url,
        "VIPBOT_LOCALE": "en",
    }


async def start_bot(env: dict[str, str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.app.cli", "run", cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def fetch(url: str, sql: str, *args: object) -> list:
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        return await conn.fetch(sql, *args)
    finally:
        await conn.close()


async def test_vipbot_run_on_postgresql_answers_books_there_and_refuses_a_second_poller(pg_url: str) -> None:  # noqa: F811
    api = await FakeBotApi().start()
    env = bot_env(api, pg_url)
    proc = await start_bot(env)
    try:
        await api.wait_for(1, method="getUpdates", timeout=30)
        api.push_update(message_update(api, GROUP, ALICE, "签到"))
        (reply,) = await api.wait_for(1, timeout=30)
        assert "Alice (1-day streak)" in reply["text"] and int(reply["chat_id"]) == GROUP  # the day's board

        second = await start_bot(env)  # the same database, polling too: refused, the first one keeps the lead
        _, second_err = await asyncio.wait_for(second.communicate(), timeout=30)
        assert second.returncode == 2, second_err.decode()
        message = second_err.decode().strip().splitlines()[-1]
        assert message.startswith(f"vipbot: another vipbot (vipbot {proc.pid}@{socket.gethostname()}) leads on"
                                  " postgresql://"), message  # fmt: skip
        assert "set telegram.webhook.url to run several workers" in message
        assert "Traceback" not in second_err.decode()

        api.push_update(message_update(api, GROUP, ALICE, "/points"))  # the first one still answers
        _, points = await api.wait_for(2, timeout=30)
        assert "Alice's points: 10" in points["text"], points  # read back from PostgreSQL
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
        await api.stop()
    log = stderr.decode()
    assert proc.returncode == 0, log
    assert "Traceback" not in log and api.token not in log
    checkins = await fetch(
        pg_url,
        "SELECT c.streak, c.points FROM checkins c JOIN identities i ON i.member_id = c.member_id"
        " WHERE i.channel = 'telegram' AND i.external_id = $1",
        str(ALICE["id"]),
    )
    assert [(r["streak"], r["points"]) for r in checkins] == [(1, 10)]
    ledger = await fetch(
        pg_url,
        "SELECT l.delta, l.reason, m.balance FROM ledger l JOIN members m ON m.id = l.member_id"
        " JOIN identities i ON i.member_id = m.id WHERE i.channel = 'telegram' AND i.external_id = $1",
        str(ALICE["id"]),
    )
    assert [(r["delta"], r["reason"], r["balance"]) for r in ledger] == [(10, "checkin", 10)]


async def test_doctor_on_postgresql_reports_the_schema_version_and_leaves_nothing_behind(pg_url: str) -> None:  # noqa: F811
    settings = Settings(storage={"url": pg_url})
    finding = await doctor.check_postgres(settings)
    (version,) = await fetch(pg_url, "SELECT MAX(version) AS v FROM schema_version")
    assert finding.outcome is Outcome.OK, finding
    assert f"schema version {version['v']}, up to date" in finding.detail
    assert await fetch(pg_url, "SELECT 1 FROM pg_class WHERE relname = $1", doctor.PG_PROBE) == []


async def test_doctor_on_an_empty_postgresql_database_says_the_bot_creates_the_tables(pg_empty_url: str) -> None:  # noqa: F811
    finding = await doctor.check_postgres(Settings(storage={"url": pg_empty_url}))
    assert finding.outcome is Outcome.OK and "empty: the bot creates its tables" in finding.detail
    assert await fetch(pg_empty_url, "SELECT 1 FROM pg_class WHERE relname IN ($1, 'schema_version')",
                       doctor.PG_PROBE) == []  # fmt: skip


async def test_doctor_on_a_read_only_postgresql_database_fails_with_the_fix(pg_url: str) -> None:  # noqa: F811
    await fetch(pg_url, "ALTER DATABASE " + pg_url.rsplit("/", 1)[1] + " SET default_transaction_read_only = on")
    finding = await doctor.check_postgres(Settings(storage={"url": pg_url}))
    assert finding.outcome is Outcome.FAIL and "read-only" in finding.detail and "primary" in finding.fix


async def test_doctor_when_postgresql_does_not_answer_fails_without_the_password() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    finding = await doctor.check_postgres(Settings(storage={"url": f"postgresql://vipbot:s3cret@127.0.0.1:{port}/x"}))
    assert finding.outcome is Outcome.FAIL and "cannot connect" in finding.detail
    assert "s3cret" not in finding.detail and "vipbot:***@127.0.0.1" in finding.detail
    assert "storage.url" in finding.fix


@pytest.mark.parametrize("command", ["backup", "restore"])
def test_backup_and_restore_on_postgresql_point_at_pg_dump(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("VIPBOT_STORAGE__URL", "postgresql://vipbot:s3cret@127.0.0.1:5432/vipbot")
    monkeypatch.chdir(tmp_path)  # no config.yaml: the defaults and the environment
    assert cli.main([command, str(tmp_path / "copy.db")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pg_dump / pg_restore" in err and "s3cret" not in err
    assert list(tmp_path.iterdir()) == []  # nothing written, no SQLite file made


def test_vipbot_import_on_postgresql_brings_the_members_in_once(
    pg_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]  # noqa: F811
) -> None:
    """`vipbot import members FILE --confirm` with `storage.url` on PostgreSQL: the rows land there, with their
    ledger, and the same file again changes nothing."""
    sheet = tmp_path / "customers.csv"
    sheet.write_text("姓名,手机,积分\n小王,13800138000,120\n小李,13900139000,80\n", encoding="utf-8")
    config = tmp_path / "config.yaml"
    config.write_text(f"locale: en\nstorage: {{url: '{pg_url}'}}\n", encoding="utf-8")
    assert cli.main(["import", "members", str(sheet), "--config", str(config)]) == 0
    assert "Dry run (nothing written yet): new 2" in capsys.readouterr().out
    assert cli.main(["import", "members", str(sheet), "--confirm", "--config", str(config)]) == 0
    assert "Imported: new 2 · updated 0 · unchanged 0" in capsys.readouterr().out
    assert cli.main(["import", "members", str(sheet), "--confirm", "--config", str(config)]) == 0
    assert "new 0 · updated 0 · unchanged 2" in capsys.readouterr().out
    rows = asyncio.run(fetch(pg_url, "SELECT m.display_name, m.balance, SUM(l.delta) AS total FROM members m"
                                     " JOIN ledger l ON l.member_id = m.id GROUP BY m.id ORDER BY m.id"))  # fmt: skip
    assert [(r["display_name"], r["balance"], r["total"]) for r in rows] == [("小王", 120, 120), ("小李", 80, 80)]
