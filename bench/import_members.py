"""Importing 100,000 customers from a spreadsheet: the dry run and the confirmation, and how long the event loop
was blocked meanwhile.

N rows are generated (name, phone, birthday, points, lifetime spend, a tier on every tenth row, a note; one row
in a thousand with a bad phone) and written as an .xlsx workbook and as a GBK .csv file. Each file is imported
into its own fresh database (made by the project's migrations, `Database.open`, with the loop-statement guard
at 100 ms) the way `vipbot import members` does it:

* dry run (`importing.import_file`): the file read and checked on a worker thread, then the plan on a read
  snapshot;
* confirm (`import_file(apply=True)`): the file read again, the plan again on a read snapshot, then its bulk
  statements in chunks of `importing.CHUNK_ROWS` rows, one short transaction each;
* re-import: the same file confirmed once more (every row unchanged, nothing written).

A ticker task on the loop wakes every millisecond and notes how late it woke: the longest lateness is the
longest the loop was blocked. Meanwhile a writer task stands for the bot's answers: every 50 ms it books a
check-in-like ledger entry for a member in its own `db.transaction()` and notes how long that took, waiting for
the write lock included (the figures: its max and p99). Goals: loop blocked and other writes waiting at most
100 ms, dry run and confirm under 30 s each. Afterwards every balance must equal its ledger sum. Run from the
repository root::

    .venv/bin/python bench/import_members.py [--rows 100000] [--chunk-rows N] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import random
import re
import shutil
import sys
import tempfile
import time
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from openpyxl import Workbook  # noqa: E402

from bench.common import load_average, percentile, run_in_process_bench  # noqa: E402
from bench.holiday_gifts import watched  # noqa: E402
from bot.app.config import Settings  # noqa: E402
from handlers.customers import importing  # noqa: E402
from storage.db.database import Database  # noqa: E402

HEADER = ["姓名", "手机", "生日", "积分", "累计消费(元)", "等级", "备注"]
NOW = 1_800_000_000
SURNAMES = "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗"
WRITE_EVERY_SECONDS = 0.05
"""How often the writer task (the bot's answers) books its small write while an import runs."""


def generate(rows: int, seed: int = 15) -> list[list[Any]]:
    rng = random.Random(seed)
    out: list[list[Any]] = []
    for i in range(rows):
        phone = f"1{rng.choice('3456789')}{i:09d}" if i % 1000 != 999 else f"2{i:010d}"  # one bad in 1000
        spend = rng.randint(0, 5000)
        out.append([
            f"{rng.choice(SURNAMES)}客户{i}", phone, f"{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
            rng.randint(0, spend), spend, "钻石" if i % 10 == 0 else "", "导入测试" if i % 7 == 0 else "",
        ])  # fmt: skip
    return out


def write_xlsx(path: Path, rows: list[list[Any]], *, shared_strings: bool = True) -> None:
    """The workbook with the sheet's size up front (a write-only workbook lacks it, and openpyxl then reads
    the whole sheet once more just to find its size). openpyxl writes every text cell as an inline string;
    with `shared_strings` (the default) the texts are then moved into a shared-strings table and empty cells
    dropped, as Excel and WPS save a workbook (`as_excel_saves_it`)."""
    book = Workbook()
    sheet = book.active
    assert sheet is not None
    sheet.title = "客户"
    sheet.append(HEADER)
    for row in rows:
        sheet.append(row)
    book.save(path)
    if shared_strings:
        as_excel_saves_it(path)


INLINE_CELL = re.compile(
    r'<c r="([A-Z]+[0-9]+)" t="inlineStr"(?: />|><is><t(?: xml:space="preserve")?>(.*?)</t></is></c>)'
)
SHARED_STRINGS_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
SHARED_STRINGS_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings"


def as_excel_saves_it(path: Path) -> None:
    """Rewrite openpyxl's inline-string cells (`<c t="inlineStr"><is><t>…`) as references into
    xl/sharedStrings.xml (`<c t="s"><v>n</v>`), the way Excel stores text, and drop the empty ones."""
    with zipfile.ZipFile(path) as source:
        parts = {name: source.read(name) for name in source.namelist()}
    index: dict[str, int] = {}

    def shared(match: re.Match[str]) -> str:
        if match.group(2) is None:
            return ""  # an empty cell: Excel does not write it
        number = index.setdefault(match.group(2), len(index))
        return f'<c r="{match.group(1)}" t="s"><v>{number}</v></c>'

    sheet = "xl/worksheets/sheet1.xml"
    parts[sheet] = INLINE_CELL.sub(shared, parts[sheet].decode()).encode()
    items = "".join(f"<si><t>{text}</t></si>" for text in index)  # already XML-escaped by openpyxl
    parts["xl/sharedStrings.xml"] = (
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
        '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'
        f' count="{len(index)}" uniqueCount="{len(index)}">{items}</sst>'
    ).encode()
    types = "[Content_Types].xml"
    parts[types] = parts[types].replace(b"</Types>", (
        f'<Override PartName="/xl/sharedStrings.xml" ContentType="{SHARED_STRINGS_TYPE}"/></Types>'
    ).encode())  # fmt: skip
    rels = "xl/_rels/workbook.xml.rels"
    parts[rels] = parts[rels].replace(b"</Relationships>", (
        f'<Relationship Id="rIdShared" Type="{SHARED_STRINGS_REL}" Target="sharedStrings.xml"/></Relationships>'
    ).encode())  # fmt: skip
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for name, data in parts.items():
            target.writestr(name, data)


def write_csv(path: Path, rows: list[list[Any]]) -> None:
    with path.open("w", encoding="gbk", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(HEADER)
        writer.writerows(rows)


def size_mb(path: Path) -> float:
    return round(path.stat().st_size / 1e6, 1)


async def small_writes(db: Database, member_id: int, stop: asyncio.Event, waits: list[float]) -> None:
    """Until `stop`: every WRITE_EVERY_SECONDS one check-in-like write (a ledger entry in its own transaction),
    its wall time (waiting for the write lock included) appended to `waits`."""
    while not stop.is_set():
        began = time.perf_counter()
        async with db.transaction() as repos:
            await repos.ledger.append(member_id, 1, "checkin", f"bench:checkin:{len(waits)}", NOW)
        waits.append(time.perf_counter() - began)
        await asyncio.sleep(WRITE_EVERY_SECONDS)


async def one_file(path: Path, db_path: Path, rows: int) -> dict[str, Any]:
    rules = Settings(locale="en", storage={"path": str(db_path)}).rules
    db = await Database.open(db_path, loop_statement_ms=100)
    figures: dict[str, Any] = {"file_mb": size_mb(path)}
    try:
        async with db.transaction() as repos:  # the member who keeps checking in meanwhile
            regular, _ = await repos.members.register("telegram", "1", "Regular", None, NOW)

        async def dry() -> importing.Outcome:
            return await importing.import_file(db, path, rules, apply=False, now=NOW)

        async def confirm() -> importing.Outcome:
            return await importing.import_file(db, path, rules, apply=True, now=NOW)

        for label, action in (("dry run", dry), ("confirm", confirm), ("re-import", confirm)):
            outcomes: list[importing.Outcome] = []

            waits: list[float] = []

            async def run(
                action: Callable[[], Awaitable[importing.Outcome]] = action,
                into: list[importing.Outcome] = outcomes,
                waits: list[float] = waits,
            ) -> None:
                stop = asyncio.Event()
                writer = asyncio.create_task(small_writes(db, regular, stop, waits))
                try:
                    into.append(await action())
                finally:
                    stop.set()
                    await writer

            took, blocked = await watched(run)  # the ticker of bench/holiday_gifts.py
            plan = outcomes[0]
            worst, p99 = max(waits) * 1000, percentile(waits, 0.99) * 1000
            figures[label] = {
                "seconds": round(took, 2), "loop_blocked_ms": round(blocked * 1000, 1), "new": plan.new,
                "updated": plan.updated, "unchanged": plan.unchanged, "bad": len(plan.bad), "writes": len(waits),
                "write_max_ms": round(worst, 1), "write_p99_ms": round(p99, 1),
            }  # fmt: skip
            print(f"  {path.name:<13} {label:<9} {took:6.2f} s; loop blocked at most {blocked * 1000:6.1f} ms;"
                  f" {len(waits)} other writes: max {worst:6.1f} ms, p99 {p99:6.1f} ms;"
                  f" new {plan.new:,} updated {plan.updated:,} unchanged {plan.unchanged:,}"
                  f" bad {len(plan.bad):,}")  # fmt: skip
        async with db.read() as repos:
            figures["mismatched_balances"] = len(await repos.ledger.mismatched_balances())
            counted = await repos.conn.execute_fetchall("SELECT COUNT(*) FROM members")
        figures["members"] = int(counted[0][0]) - 1  # not the regular
        print(f"  {path.name:<13} members {figures['members']:,}; balances differing from their ledger:"
              f" {figures['mismatched_balances']}")  # fmt: skip
    finally:
        await db.close()
    return figures


FILES = ("members.xlsx", "openpyxl.xlsx", "members.csv")
"""An .xlsx as Excel saves it (shared strings), one as openpyxl writes it (inline strings: what
`/export members` and `vipbot import template` produce; slower to read), and a GBK .csv."""


async def bench(args: argparse.Namespace) -> tuple[int, dict[str, Any]]:
    folder = Path(tempfile.mkdtemp(prefix="vipbot-import-"))
    if args.chunk_rows:
        importing.CHUNK_ROWS = args.chunk_rows
    report: dict[str, Any] = {"rows": args.rows, "chunk_rows": importing.CHUNK_ROWS, "cpus": os.cpu_count()}
    print(f"confirming {importing.CHUNK_ROWS:,} rows a chunk, chunks for up to {importing.CHUNK_SECONDS * 1000:g} ms"
          " a transaction")  # fmt: skip
    try:
        began = time.perf_counter()
        rows = generate(args.rows)
        write_xlsx(folder / "members.xlsx", rows)
        write_xlsx(folder / "openpyxl.xlsx", rows, shared_strings=False)
        write_csv(folder / "members.csv", rows)
        print(f"{args.rows:,} rows written as .xlsx (as Excel saves it, and as openpyxl does) and GBK .csv in"
              f" {time.perf_counter() - began:.1f} s")  # fmt: skip
        for name in FILES:
            report[name] = await one_file(folder / name, folder / f"{name}.db", args.rows)
    finally:
        shutil.rmtree(folder)
    report["load_average"] = load_average()
    print(report["load_average"])
    good = args.rows - args.rows // 1000
    ok = all(
        report[name]["confirm"]["new"] == good
        and report[name]["re-import"]["unchanged"] == good
        and not report[name]["mismatched_balances"]
        and all(report[name][step]["seconds"] < 30 for step in ("dry run", "confirm"))
        and all(report[name][step]["loop_blocked_ms"] <= 100 for step in ("dry run", "confirm", "re-import"))
        and all(report[name][step]["write_max_ms"] <= 100 for step in ("dry run", "confirm", "re-import"))
        for name in FILES
    )
    return (0 if ok else 1), report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--chunk-rows", type=int, help="rows per chunk (default: importing.CHUNK_ROWS)")
    parser.add_argument("--json", help="write the figures here as JSON")
    return run_in_process_bench(bench, parser.parse_args())


if __name__ == "__main__":
    raise SystemExit(main())
