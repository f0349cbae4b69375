"""/export members (staff only): every member, one tier's or one segment's, as .csv or .xlsx, parsed back here;
formula-looking names are escaped in both formats; a member is refused."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from openpyxl import load_workbook

from handlers.customers import importing
from tests.conftest import ChatDriver

NOW = 1_800_000_000
HEADER = ["Member no.", "Name", "Phone", "Tier", "Points", "Lifetime points", "Birthday", "Joined", "Note"]


async def imported(chat: ChatDriver, tmp_path: Path) -> None:
    """Three imported customers (gold, diamond, black) and one member who only talked to the bot."""
    path = tmp_path / "customers.csv"
    path.write_text(
        "姓名,手机,生日,积分,累计积分,备注\n"
        "王小明,13800138000,03-15,100,100,老客户\n"
        '=HYPERLINK("http://evil"),13900139000,,700,700,\n'
        "李四,13700137000,1990-12-01,50,2000,+vip\n",
        encoding="utf-8",
    )
    await importing.confirm(chat.runtime.deps.db, importing.parse_file(path, chat.runtime.deps.rules), NOW)
    await chat.say("alice", "hi")


async def export_file(chat: ChatDriver, text: str) -> tuple[str, bytes, str]:
    (reply,) = await chat.replies("boss", text, group=False)
    assert reply.document is not None, reply.text
    assert reply.secret  # names and phones never go where members read
    return reply.document[0], reply.document[1], reply.text


def csv_rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


async def test_staff_export_all_members_as_csv(chat: ChatDriver, tmp_path: Path) -> None:
    await imported(chat, tmp_path)
    name, data, caption = await export_file(chat, "/export members")
    assert name.startswith("members-all-") and name.endswith(".csv")
    assert caption == "Members: all members, 4 members."
    rows = csv_rows(data)
    assert rows[0] == HEADER
    by_phone = {row[2]: row for row in rows[1:]}
    assert by_phone["13800138000"][1:7] == ["王小明", "13800138000", "Gold", "100", "100", "03-15"]
    assert by_phone["13800138000"][8] == "老客户"
    assert by_phone["13900139000"][1] == '\'=HYPERLINK("http://evil")'  # escaped: shown as text, never run
    assert by_phone["13900139000"][3] == "Diamond"
    assert by_phone["13700137000"][3:6] == ["Black card", "50", "2000"] and by_phone["13700137000"][8] == "'+vip"
    assert "Alice" in {row[1] for row in rows[1:] if not row[2]}  # a member who never was in the file: no phone
    assert [row[0] for row in rows[1:]] == sorted((row[0] for row in rows[1:]), key=int)


async def test_staff_export_one_tier_as_xlsx(chat: ChatDriver, tmp_path: Path) -> None:
    await imported(chat, tmp_path)
    name, data, caption = await export_file(chat, "/export members tier diamond xlsx")
    assert name.startswith("members-diamond-") and name.endswith(".xlsx")
    assert caption == "Members: Diamond, 1 member."
    sheet = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    rows = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert rows[0] == HEADER
    assert len(rows) == 2 and rows[1][1] == '\'=HYPERLINK("http://evil")' and rows[1][2] == "13900139000"
    assert rows[1][3:6] == ["Diamond", 700, 700]
    _, gold, _ = await export_file(chat, "/export members tier Gold")  # by display name too
    assert sorted(row[1] for row in csv_rows(gold)[1:]) == ["Alice", "Boss", "王小明"]  # Boss: since the last /export


async def test_staff_export_one_segment(chat: ChatDriver, tmp_path: Path) -> None:
    await imported(chat, tmp_path)
    await chat.say("boss", "/purchase @alice 100")
    _, data, caption = await export_file(chat, "/export members segment never csv")
    assert caption == "Members: Never bought, 4 members."  # Boss too
    never = sorted(row[2] for row in csv_rows(data)[1:])
    assert never == ["", "13700137000", "13800138000", "13900139000"]
    _, data, _ = await export_file(chat, "/export members segment new")
    assert [row[1] for row in csv_rows(data)[1:]] == ["Alice"]


async def test_a_member_is_refused_and_a_wrong_choice_gets_the_usage(chat: ChatDriver, tmp_path: Path) -> None:
    await imported(chat, tmp_path)
    (refused,) = await chat.replies("alice", "/export members", group=False)
    assert refused.document is None and "only staff" in refused.text
    for wrong in ("/export", "/export orders", "/export members tier platinum", "/export members segment vip"):
        (usage,) = await chat.replies("boss", wrong, group=False)
        assert usage.document is None and "/export members [tier" in usage.text, wrong
