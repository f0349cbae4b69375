"""Importing customers from .xlsx and .csv (UTF-8 with and without BOM, GBK): a dry run that writes nothing and
names every bad row by its line, a confirmation that books points as ledger entries (balances equal their ledger,
tiers follow lifetime points), a re-import that changes nothing, an update that books only the difference, and
the `vipbot import` command line."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from openpyxl import Workbook

from bot.app.cli import main as cli_main
from bot.app.runtime import Runtime
from handlers.customers import importing
from handlers.customers.importing import Plan
from handlers.customers.rows import ParsedRows
from storage.customers import CustomerRepo, ImportPayload
from storage.members import Member
from tests.conftest import ChatDriver

ROOT = Path(__file__).resolve().parent.parent
VIPBOT = Path(sys.executable).with_name("vipbot")
if not VIPBOT.exists():
    VIPBOT = ROOT / ".venv" / "bin" / "vipbot"
NOW = 1_800_000_000

HEADER = ["姓名", "手机号", "生日", "积分", "累计消费(元)", "等级", "备注", "Telegram 用户名", "微信 OpenID"]
ROWS: list[list[Any]] = [
    ["王小明", "13800138000", "03-15", 520, 1999, "", "老客户", "@Xiaoming_Wang", ""],  # line 2
    ["", "", "", 10, "", "", "", "", ""],  # line 3: no phone
    ["李四", "12345", "", "", "", "", "", "", ""],  # line 4: bad phone
    ["王小明二", "+86 138-0013-8000", "", "", "", "", "", "", ""],  # line 5: same phone as line 2
    ["赵六", "13900139000", "13-40", "", "", "", "", "", ""],  # line 6: bad birthday
    ["钱七", "13700137000", "", "", "", "白金", "", "", ""],  # line 7: unknown tier
    ["孙八", "13600136000", "", "abc", "", "", "", "", ""],  # line 8: bad points
    ['=HYPERLINK("http://x")', "8613500135000", "1990-07-08", 50, "", "钻石", "", "", "oAbCdEfGhIjKlMn0"],  # 9
    ["周九", "13400134000", "2月29日", 0, 3000, "", "=1+1", "", ""],  # line 10: a leap-day birthday, black tier
]
BAD = {3: "missing_phone", 4: "bad_phone", 5: "duplicate_phone", 6: "bad_birthday", 7: "unknown_tier", 8: "bad_points"}
GOOD_PHONES = {"13800138000", "13500135000", "13400134000"}


def xlsx_bytes(header: list[Any], rows: list[list[Any]]) -> bytes:
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def csv_bytes(header: list[Any], rows: list[list[Any]], encoding: str) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode(encoding)


def write(tmp_path: Path, kind: str, header: list[Any], rows: list[list[Any]], name: str = "customers") -> Path:
    """`kind`: 'xlsx', or a CSV encoding ('utf-8', 'utf-8-sig', 'gbk')."""
    if kind == "xlsx":
        path = tmp_path / f"{name}.xlsx"
        path.write_bytes(xlsx_bytes(header, rows))
    else:
        path = tmp_path / f"{name}.csv"
        path.write_bytes(csv_bytes(header, rows, kind))
    return path


def parse(runtime: Runtime, path: Path) -> ParsedRows:
    return importing.parse_file(path, runtime.deps.rules)


async def member_by_phone(runtime: Runtime, phone: str) -> Member:
    async with runtime.deps.db.read() as repos:
        known = await repos.customers.known()
        member = await repos.members.get(known[phone].member_id)
        assert member is not None
        assert await repos.ledger.sum_for(member.id) == member.balance
        return member


async def ledger_count(runtime: Runtime) -> int:
    async with runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM ledger")
    return int(rows[0][0])


async def member_count(runtime: Runtime) -> int:
    async with runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM members")
    return int(rows[0][0])


def bad_lines(plan: Plan) -> dict[int, str]:
    return {bad.line: bad.reason for bad in plan.bad}


@pytest.mark.parametrize("kind", ["xlsx", "utf-8", "utf-8-sig", "gbk"])
async def test_dry_run_then_confirm(runtime: Runtime, tmp_path: Path, kind: str) -> None:
    path = write(tmp_path, kind, HEADER, ROWS)
    parsed = parse(runtime, path)
    plan = await importing.dry_run(runtime.deps.db, parsed)
    assert (len(plan.new), len(plan.updated), plan.unchanged) == (3, 0, 0)
    assert bad_lines(plan) == BAD
    assert await member_count(runtime) == 0  # a dry run writes nothing
    text = "\n".join(importing.summary_lines(runtime.deps.texts, plan.outcome(), applied=False))
    assert "new 3 · updated 0 · unchanged 0 · with problems 6" in text
    assert "Line 5: the phone number is already on line 2" in text
    assert "Line 4: the phone number (12345) is not an 11-digit mainland mobile number" in text

    applied = await importing.confirm(runtime.deps.db, parsed, NOW)
    assert (len(applied.new), len(applied.updated), applied.unchanged, len(applied.bad)) == (3, 0, 0, 6)
    rules = runtime.deps.rules
    wang = await member_by_phone(runtime, "13800138000")
    assert (wang.display_name, wang.birthday, wang.balance, wang.earned) == ("王小明", "03-15", 520, 1999)
    assert rules.tier_for(wang.earned).id == "black"
    formula = await member_by_phone(runtime, "13500135000")  # +86 prefix removed; a formula is only a name
    assert (formula.display_name, formula.birthday, formula.balance) == ('=HYPERLINK("http://x")', "07-08", 50)
    assert (formula.earned, rules.tier_for(formula.earned).id) == (600, "diamond")  # lifted to its tier
    zhou = await member_by_phone(runtime, "13400134000")
    assert (zhou.birthday, zhou.balance, zhou.earned, rules.tier_for(zhou.earned).id) == ("02-29", 0, 3000, "black")
    async with runtime.deps.db.read() as repos:
        assert await repos.ledger.mismatched_balances() == []
        known = await repos.customers.known()
        assert set(known) == GOOD_PHONES
        assert known["13800138000"].telegram_username == "xiaoming_wang"  # a hint, not an identity
        assert known["13400134000"].note == "=1+1"
        assert (await repos.members.by_identity("wechat", "oAbCdEfGhIjKlMn0")) == formula  # an identity now
        reasons = await repos.conn.execute_fetchall("SELECT DISTINCT reason FROM ledger")
    assert [r[0] for r in reasons] == ["import"]


async def test_reimporting_the_same_file_changes_nothing(runtime: Runtime, tmp_path: Path) -> None:
    parsed = parse(runtime, write(tmp_path, "xlsx", HEADER, ROWS))
    await importing.confirm(runtime.deps.db, parsed, NOW)
    entries, members = await ledger_count(runtime), await member_count(runtime)
    again = parse(runtime, write(tmp_path, "gbk", HEADER, ROWS))  # the same rows saved as CSV by Chinese Excel
    for plan in (await importing.dry_run(runtime.deps.db, again), await importing.confirm(runtime.deps.db, again, NOW)):
        assert (len(plan.new), len(plan.updated), plan.unchanged) == (0, 0, 3)
    assert (await ledger_count(runtime), await member_count(runtime)) == (entries, members)


async def test_an_update_books_only_the_difference(runtime: Runtime, tmp_path: Path) -> None:
    header = ["name", "phone", "opening points", "lifetime points"]  # English headers
    first = parse(runtime, write(tmp_path, "utf-8", header, [["Ann", "13800138000", 100, 500]]))
    await importing.confirm(runtime.deps.db, first, NOW)
    ann = await member_by_phone(runtime, "13800138000")
    async with runtime.deps.db.transaction() as repos:  # meanwhile she earns 10 points at the shop
        await repos.ledger.append(ann.id, 10, "award", "test:award", NOW + 1)
    later = parse(runtime, write(tmp_path, "utf-8", header, [["Ann", "13800138000", 150, 800]], name="later"))
    plan = await importing.dry_run(runtime.deps.db, later)
    assert (len(plan.new), len(plan.updated), plan.unchanged) == (0, 1, 0)
    before = await ledger_count(runtime)
    await importing.confirm(runtime.deps.db, later, NOW + 2)
    ann = await member_by_phone(runtime, "13800138000")
    assert (ann.balance, ann.earned) == (110 + 50, 510 + 300)  # the award kept, the file's changes added
    assert await ledger_count(runtime) == before + 2
    assert runtime.deps.rules.tier_for(ann.earned).id == "diamond"
    back = parse(runtime, write(tmp_path, "utf-8", header, [["Ann", "13800138000", 100, 500]], name="back"))
    await importing.confirm(runtime.deps.db, back, NOW + 3)  # back to the first file's figures: books again
    ann = await member_by_phone(runtime, "13800138000")
    assert (ann.balance, ann.earned) == (110, 510)
    assert runtime.deps.rules.tier_for(ann.earned).id == "gold"


async def test_a_change_that_would_take_a_balance_below_zero_is_a_bad_row(runtime: Runtime, tmp_path: Path) -> None:
    header = ["手机", "积分"]
    await importing.confirm(
        runtime.deps.db, parse(runtime, write(tmp_path, "utf-8", header, [["13800138000", 100]])), NOW
    )
    member = await member_by_phone(runtime, "13800138000")
    async with runtime.deps.db.transaction() as repos:  # she redeemed 80 meanwhile
        await repos.ledger.append(member.id, -80, "redeem", "test:redeem", NOW + 1)
    lower = parse(runtime, write(tmp_path, "utf-8", header, [["13800138000", 0]], name="lower"))
    plan = await importing.confirm(runtime.deps.db, lower, NOW + 2)
    assert bad_lines(plan) == {2: "balance_below_zero"} and not plan.updated
    assert (await member_by_phone(runtime, "13800138000")).balance == 20


async def test_a_wechat_openid_of_another_member_is_refused(runtime: Runtime, tmp_path: Path) -> None:
    async with runtime.deps.db.transaction() as repos:
        owner, _ = await repos.members.register("wechat", "oTaken000000000", "Someone", None, NOW)
    header = ["手机", "微信 OpenID", "Telegram"]
    rows = [["13800138000", "oTaken000000000", ""], ["13800138001", "bad id!", ""], ["13800138002", "", "x"],
            ["13800138003", "oFree0000000000", ""], ["13800138004", "oFree0000000000", ""]]  # fmt: skip
    plan = await importing.confirm(runtime.deps.db, parse(runtime, write(tmp_path, "xlsx", header, rows)), NOW)
    assert bad_lines(plan) == {2: "openid_taken", 3: "bad_openid", 4: "bad_telegram", 6: "duplicate_openid"}
    assert plan.bad[0].values == {"member": owner}
    async with runtime.deps.db.read() as repos:
        free = await repos.members.by_identity("wechat", "oFree0000000000")
    assert free is not None and free.id == (await member_by_phone(runtime, "13800138003")).id


async def test_formula_cells_and_odd_values_never_crash(runtime: Runtime, tmp_path: Path) -> None:
    header = ["手机", "积分", "生日", "累计消费"]
    rows = [["=A1", "=1+1", "", ""], ["13800138000", -5, "", ""], ["13800138001", 1.5, "", ""],
            ["13800138002", "", "02-30", ""], ["13800138003", "", "", "¥1,234.50"],
            [13800138004.0, "1,200", "", ""]]  # fmt: skip
    plan = await importing.dry_run(runtime.deps.db, parse(runtime, write(tmp_path, "xlsx", header, rows)))
    assert bad_lines(plan) == {2: "bad_phone", 3: "bad_points", 4: "bad_points", 5: "bad_birthday"}
    earned = {change.row.phone: (change.balance, change.earned) for change in plan.new}
    assert earned == {"13800138003": (0, 1234), "13800138004": (1200, 1200)}


async def test_a_quoted_note_over_two_lines_keeps_the_line_numbers(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_bytes('手机,备注\n13800138000,"first\nsecond"\n12,\n'.encode("utf-8-sig"))
    plan = await importing.dry_run(runtime.deps.db, parse(runtime, path))
    assert bad_lines(plan) == {4: "bad_phone"} and plan.new[0].note == "first\nsecond"


# --- the command line -----------------------------------------------------------------------------------------
def vipbot(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIPBOT_", "TELEGRAM_", "WECHAT_"))}
    env["HOME"] = str(cwd)
    return subprocess.run(
        [str(VIPBOT), *args, "--config", str(cwd / "config.yaml")],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, cwd=cwd, env=env, timeout=60, check=False,
    )  # fmt: skip


def test_the_command_line_dry_run_then_confirm_then_a_reimport_is_a_no_op(tmp_path: Path, migrated_db: Path) -> None:
    db = tmp_path / "vip.db"
    db.write_bytes(migrated_db.read_bytes())
    (tmp_path / "config.yaml").write_text(f"locale: en\nstorage: {{path: '{db}'}}\n", encoding="utf-8")
    path = write(tmp_path, "gbk", HEADER, ROWS)

    dry = vipbot("import", "members", str(path), cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "Dry run (nothing written yet): new 3 · updated 0 · unchanged 0 · with problems 6." in dry.stdout
    for line in BAD:
        assert f"Line {line}: " in dry.stdout
    assert "--confirm" in dry.stdout

    done = vipbot("import", "members", str(path), "--confirm", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Imported: new 3 · updated 0 · unchanged 0" in done.stdout
    again = vipbot("import", "members", str(path), "--confirm", cwd=tmp_path)
    assert "new 0 · updated 0 · unchanged 3" in again.stdout
    with sqlite3.connect(db) as conn:  # each confirmation is audited (the dry run is not), actor: the command line
        query = "SELECT actor_channel, actor_member_id, command, args, outcome FROM audit_log"
        audited = conn.execute(query).fetchall()
    assert audited == [("cli", None, "import", f"members {path.name} --confirm", "done")] * 2


def test_templates_import_and_unreadable_files_exit_2_with_one_line(
    tmp_path: Path, migrated_db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The same entry point as `vipbot import`, in this process (each subprocess costs a second of start-up).
    db = tmp_path / "vip.db"
    db.write_bytes(migrated_db.read_bytes())
    config = tmp_path / "config.yaml"
    config.write_text(f"locale: en\nstorage: {{path: '{db}'}}\n", encoding="utf-8")

    def vipbot_here(*args: str) -> tuple[int, str, str]:
        code = cli_main([*args, "--config", str(config)])
        out, err = capsys.readouterr()
        return code, out, err

    for template in ("template.xlsx", "template.csv"):
        assert vipbot_here("import", "template", str(tmp_path / template))[0] == 0
        code, out, err = vipbot_here("import", "members", str(tmp_path / template))  # the template imports
        assert code == 0 and "new 1 · updated 0 · unchanged 0 · with problems 0" in out, out + err
    assert vipbot_here("import", "template", str(tmp_path / "t.pdf"))[0] == 2

    (tmp_path / "broken.xlsx").write_bytes(b"PK\x03\x04 not really a workbook")
    (tmp_path / "nophone.csv").write_text("姓名,积分\n小王,10\n", encoding="utf-8")
    for name in ("broken.xlsx", "nophone.csv", "missing.csv", "config.yaml"):
        code, out, err = vipbot_here("import", "members", str(tmp_path / name))
        assert code == 2, (name, out, err)
        assert "Traceback" not in err and err.startswith("vipbot: Cannot read")


async def test_an_imported_wechat_customer_is_the_same_member_when_they_write(runtime: Runtime, tmp_path: Path) -> None:
    header = ["姓名", "手机", "积分", "累计积分", "微信 OpenID"]
    path = write(tmp_path, "utf-8-sig", header, [["小红", "13800138000", 300, 700, "oXiaoHong000001"]])
    await importing.confirm(runtime.deps.db, parse(runtime, path), NOW)
    wechat = ChatDriver(runtime, channel="wechat")
    text = await wechat.say("oXiaoHong000001", "/points", group=False)
    assert "points: 300" in text and "Tier: Diamond" in text
    assert "+700 imported" in text and "-400 imported" in text  # the ledger says where the points came from
    assert await member_count(runtime) == 1


# --- confirming in chunks -------------------------------------------------------------------------------------
def chunks_of_two_signalled(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """Confirmations write 2 rows per chunk, one chunk per transaction; the event is set when the first chunk
    starts writing."""
    monkeypatch.setattr(importing, "CHUNK_ROWS", 2)
    monkeypatch.setattr(importing, "CHUNKS_PER_TRANSACTION", 1)
    writing = asyncio.Event()
    real_apply = CustomerRepo.apply

    async def apply(self: CustomerRepo, payload: ImportPayload, now: int) -> None:
        writing.set()
        await real_apply(self, payload, now)

    monkeypatch.setattr(CustomerRepo, "apply", apply)
    return writing


def chunked_rows(count: int) -> list[list[Any]]:
    """`count` good rows (phone, opening points, lifetime points): two ledger entries each."""
    return [[f"1380013{i:04d}", 10 + i, 100 + i] for i in range(count)]


@pytest.mark.sqlite_only("the single writer: a write waits its turn between chunks; PostgreSQL's do not wait")
async def test_a_write_during_a_confirmation_waits_for_one_chunk_not_the_whole_file(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = runtime.deps.db
    async with db.transaction() as repos:
        shopper, _ = await repos.members.register("telegram", "777", "Shopper", None, NOW)
    writing = chunks_of_two_signalled(monkeypatch)
    parsed = parse(runtime, write(tmp_path, "utf-8", ["手机", "积分", "累计积分"], chunked_rows(10)))
    importing_task = asyncio.create_task(importing.confirm(db, parsed, NOW))
    await writing.wait()  # the first chunk's transaction holds the write lock now
    async with db.transaction() as repos:  # a check-in-like write, waiting its turn
        await repos.ledger.append(shopper, 5, "checkin", "test:checkin", NOW)
        members_then = await member_count(runtime)
    assert not importing_task.done()  # it got in between two chunks ...
    assert 1 < members_then < 11  # ... after the first, long before the last
    plan = await importing_task
    assert (len(plan.new), len(plan.updated), plan.unchanged) == (10, 0, 0)
    assert await member_count(runtime) == 11 and await ledger_count(runtime) == 2 * 10 + 1


async def test_a_confirmation_that_fails_part_way_is_completed_by_running_it_again(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = runtime.deps.db
    monkeypatch.setattr(importing, "CHUNK_ROWS", 2)
    monkeypatch.setattr(importing, "CHUNKS_PER_TRANSACTION", 1)
    calls = 0
    real_apply = CustomerRepo.apply

    async def crashing_apply(self: CustomerRepo, payload: ImportPayload, now: int) -> None:
        nonlocal calls
        calls += 1
        await real_apply(self, payload, now)  # the third chunk's rows are written, then it fails: rolled back
        if calls == 3:
            raise RuntimeError("the process died here")

    monkeypatch.setattr(CustomerRepo, "apply", crashing_apply)
    rows = chunked_rows(7)
    parsed = parse(runtime, write(tmp_path, "utf-8", ["手机", "积分", "累计积分"], rows))
    with pytest.raises(RuntimeError):
        await importing.confirm(db, parsed, NOW)
    assert (await member_count(runtime), await ledger_count(runtime)) == (4, 2 * 4)  # two chunks stayed
    monkeypatch.setattr(CustomerRepo, "apply", real_apply)

    plan = await importing.confirm(db, parsed, NOW)  # the same file confirmed again
    assert (len(plan.new), len(plan.updated), plan.unchanged) == (3, 0, 4)
    assert (await member_count(runtime), await ledger_count(runtime)) == (7, 2 * 7)  # nothing booked twice
    for phone, balance, earned in rows:
        member = await member_by_phone(runtime, phone)  # also: its balance equals its ledger
        assert (member.balance, member.earned) == (balance, earned)
    async with db.read() as repos:
        assert await repos.ledger.mismatched_balances() == []
    again = await importing.confirm(db, parsed, NOW)
    assert (len(again.new), len(again.updated), again.unchanged) == (0, 0, 7)


async def test_a_chunk_rechecks_its_rows_against_a_change_made_after_the_snapshot(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = runtime.deps.db
    header = ["手机", "积分"]
    await importing.confirm(db, parse(runtime, write(tmp_path, "utf-8", header, [["13800138000", 100]])), NOW)
    member = await member_by_phone(runtime, "13800138000")
    real_chunk = importing._apply_chunk

    async def redeem_first(*args: Any) -> Plan:  # she redeems 80 after the plan's snapshot, before her chunk
        async with db.transaction() as repos:
            await repos.ledger.append(member.id, -80, "redeem", "test:redeem", NOW + 1)
        return await real_chunk(*args)

    monkeypatch.setattr(importing, "_apply_chunk", redeem_first)
    lower = parse(runtime, write(tmp_path, "utf-8", header, [["13800138000", 0]], name="lower"))
    plan = await importing.confirm(db, lower, NOW + 2)  # the snapshot said: take 100 off a balance of 100
    assert bad_lines(plan) == {2: "balance_below_zero"} and not plan.updated
    assert (await member_by_phone(runtime, "13800138000")).balance == 20
