"""From spreadsheet rows to customers: columns found by their header (Chinese or English), every cell checked,
and every bad row kept with its line number and the reason (a catalog key and its values).

A cell never crashes the import: a number where text is due is read as text, text where a number is due is a
bad row, and a text that looks like a formula (``=1+1``) is data like any other.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from functools import partial
from typing import Any

from handlers.core.rules import Rules, Tier
from handlers.customers.spreadsheet import Cell, Table

COLUMNS: dict[str, tuple[str, ...]] = {
    "name": ("姓名", "名字", "客户姓名", "name"),
    "phone": ("手机", "手机号", "手机号码", "电话", "phone", "mobile"),
    "birthday": ("生日", "birthday"),
    "points": ("积分", "当前积分", "积分余额", "openingpoints", "points", "balance"),
    "spend": ("累计消费", "消费总额", "lifetimespend", "spend"),
    "earned": ("累计积分", "lifetimepoints"),
    "tier": ("等级", "会员等级", "tier"),
    "note": ("备注", "note"),
    "telegram": ("telegram用户名", "telegram", "telegramusername"),
    "openid": ("微信openid", "openid", "wechatopenid"),
}
"""Column -> accepted headers, compared without spaces, case or a bracketed unit ("累计消费(元)")."""

TEMPLATE_HEADER = ("姓名", "手机", "生日", "积分", "累计消费(元)", "等级", "备注", "Telegram 用户名", "微信 OpenID")
TEMPLATE_EXAMPLE = ("王小明", "13800138000", "03-15", 520, 1999, "", "老客户", "xiaoming_wang", "")

MOBILE = re.compile(r"^1[3-9]\d{9}$")
TELEGRAM_USERNAME = re.compile(r"^[a-z][a-z0-9_]{3,31}$")
OPENID = re.compile(r"^[A-Za-z0-9_-]{10,64}$")
BIRTHDAY_PATTERNS = (
    re.compile(r"^(?P<m>\d{1,2})[-/.](?P<d>\d{1,2})$"),
    re.compile(r"^(?P<m>\d{1,2})月(?P<d>\d{1,2})日?$"),
    re.compile(r"^(?P<y>\d{4})[-/.](?P<m>\d{1,2})[-/.](?P<d>\d{1,2})(?:[ T].*)?$"),
    re.compile(r"^(?P<y>\d{4})年(?P<m>\d{1,2})月(?P<d>\d{1,2})日?$"),
    re.compile(r"^(?P<y>\d{4})(?P<m>\d{2})(?P<d>\d{2})$"),
)
MAX_POINTS = 100_000_000


@dataclass(frozen=True, slots=True)
class CustomerRow:
    """One good row. None: the file says nothing (the cell is empty or the column is missing)."""

    line: int
    phone: str
    name: str | None
    birthday: str | None
    balance: int | None
    earned: int | None
    note: str | None
    telegram: str | None
    openid: str | None


@dataclass(frozen=True, slots=True)
class BadRow:
    line: int
    reason: str
    """Catalog key under `import_cmd.row_`, e.g. 'bad_phone' (`import_cmd.row_bad_phone`)."""
    values: dict[str, Any] = field(default_factory=dict)


class BadCell(Exception):
    def __init__(self, reason: str, **values: Any) -> None:
        super().__init__(reason)
        self.reason = reason
        self.values = values


class MissingColumn(Exception):
    """The file has no phone column: it cannot be matched at all."""


def _norm_header(text: str) -> str:
    text = re.sub(r"[(（][^)）]*[)）]", "", text)
    return re.sub(r"\s+", "", text).casefold()


def column_positions(header: list[str]) -> dict[str, int]:
    """Column -> index of its cell in a row (the first matching header wins). Raises MissingColumn."""
    accepted = {alias.casefold(): column for column, aliases in COLUMNS.items() for alias in aliases}
    found: dict[str, int] = {}
    for index, text in enumerate(header):
        column = accepted.get(_norm_header(text))
        if column is not None and column not in found:
            found[column] = index
    if "phone" not in found:
        raise MissingColumn
    return found


def _text(cell: Cell) -> str | None:
    """A cell as text, None when empty; a whole float (13800138000.0 from Excel) loses its '.0'."""
    if cell is None:
        return None
    if isinstance(cell, float) and cell.is_integer():
        cell = int(cell)
    if isinstance(cell, datetime):
        cell = cell.date()
    text = str(cell).strip()
    return text or None


def parse_phone(cell: Cell) -> str:
    text = _text(cell)
    if text is None:
        raise BadCell("missing_phone")
    digits = re.sub(r"[\s\-()（）]", "", text)
    if digits.startswith("+"):
        digits = digits[1:]
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    if not MOBILE.match(digits):
        raise BadCell("bad_phone", value=text[:40])
    return digits


def parse_points(cell: Cell, column: str) -> int | None:
    """A whole number of points >= 0 ('1,200' and 1200.0 too)."""
    text = _text(cell)
    if text is None:
        return None
    try:
        value = Decimal(text.replace(",", "").replace("，", ""))
    except InvalidOperation:
        raise BadCell(f"bad_{column}", value=text[:40]) from None
    if not value.is_finite() or value != value.to_integral_value() or value < 0 or value > MAX_POINTS:
        raise BadCell(f"bad_{column}", value=text[:40])
    return int(value)


def parse_spend(cell: Cell, per_yuan: Decimal) -> int | None:
    """Lifetime spend in yuan as lifetime points (the purchase earn rate, rounded down)."""
    text = _text(cell)
    if text is None:
        return None
    cleaned = text.replace(",", "").replace("，", "").lstrip("¥￥").strip()
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise BadCell("bad_spend", value=text[:40]) from None
    if not value.is_finite() or value < 0 or value * per_yuan > MAX_POINTS:
        raise BadCell("bad_spend", value=text[:40])
    return int(value * per_yuan)


def parse_birthday(cell: Cell) -> str | None:
    """'MM-DD' from a date cell or a text such as 03-15, 3/15, 3月15日, 1990-03-15 or 19900315."""
    if cell is None:
        return None
    if isinstance(cell, datetime | date):
        return f"{cell.month:02d}-{cell.day:02d}"
    text = _text(cell)
    if text is None:
        return None
    for pattern in BIRTHDAY_PATTERNS:
        match = pattern.match(text)
        if match:
            month, day = int(match["m"]), int(match["d"])
            try:
                date(2000, month, day)  # a leap year: 02-29 is a birthday
            except ValueError:
                break
            return f"{month:02d}-{day:02d}"
    raise BadCell("bad_birthday", value=text[:40])


def parse_tier(cell: Cell, tiers: Mapping[str, Tier]) -> Tier | None:
    text = _text(cell)
    if text is None:
        return None
    tier = tiers.get(text.casefold())
    if tier is None:
        raise BadCell("unknown_tier", value=text[:40])
    return tier


def parse_telegram(cell: Cell) -> str | None:
    text = _text(cell)
    if text is None:
        return None
    name = text.removeprefix("@").lower()
    if not TELEGRAM_USERNAME.match(name):
        raise BadCell("bad_telegram", value=text[:40])
    return name


def parse_openid(cell: Cell) -> str | None:
    text = _text(cell)
    if text is None:
        return None
    if not OPENID.match(text):
        raise BadCell("bad_openid", value=text[:40])
    return text


def _note(cell: Cell) -> str | None:
    text = _text(cell)
    return None if text is None else text[:500]


def _name(cell: Cell) -> str | None:
    text = _text(cell)
    return None if text is None else text[:64]


@dataclass(frozen=True, slots=True)
class ParsedRows:
    rows: list[CustomerRow]
    bad: list[BadRow]


def parse_table(table: Table, rules: Rules, tiers: Mapping[str, Tier]) -> ParsedRows:
    """Every data row of `table` as a CustomerRow or a BadRow. `tiers`: tier by lower-case id or name.

    Lifetime points come from the lifetime-points column, else from the lifetime spend, else equal the
    opening points; a tier column lifts them to that tier's threshold (tiers follow lifetime points, so the
    member lands in the tier the file names, or a higher one the points earn). A phone seen earlier in the
    file makes the row bad (the first one counts). Raises MissingColumn."""
    at = column_positions(table.header)
    per_yuan = rules.points.per_yuan
    readers: dict[str, tuple[str, Callable[[Cell], Any]]] = {
        "phone": ("phone", parse_phone),
        "name": ("name", _name),
        "birthday": ("birthday", parse_birthday),
        "balance": ("points", partial(parse_points, column="points")),
        "earned": ("earned", partial(parse_points, column="earned")),
        "spend": ("spend", partial(parse_spend, per_yuan=per_yuan)),
        "tier": ("tier", partial(parse_tier, tiers=tiers)),
        "note": ("note", _note),
        "telegram": ("telegram", parse_telegram),
        "openid": ("openid", parse_openid),
    }
    # Only the file's columns are read (the phone's too when its cell is missing: "no phone").
    present = [(name, at[column], read) for name, (column, read) in readers.items() if column in at]
    empty = dict.fromkeys(readers)
    rows: list[CustomerRow] = []
    bad: list[BadRow] = []
    first_line: dict[str, int] = {}
    for line, cells in table.rows:
        try:
            values = empty.copy()
            width = len(cells)
            for name, index, read in present:
                values[name] = read(cells[index] if index < width else None)
        except BadCell as exc:
            bad.append(BadRow(line, exc.reason, exc.values))
            continue
        phone = values["phone"]
        if phone in first_line:
            bad.append(BadRow(line, "duplicate_phone", {"first": first_line[phone]}))
            continue
        first_line[phone] = line
        earned = values["earned"] if values["earned"] is not None else values["spend"]
        if earned is None and values["balance"] is not None:
            earned = values["balance"]
        tier: Tier | None = values["tier"]
        if tier is not None:
            earned = max(earned or 0, tier.min_points)
        rows.append(
            CustomerRow(
                line=line, phone=phone, name=values["name"], birthday=values["birthday"], balance=values["balance"],
                earned=earned, note=values["note"], telegram=values["telegram"], openid=values["openid"],
            )
        )  # fmt: skip
    return ParsedRows(rows, bad)


def tier_lookup(rules: Rules, names: Callable[[Tier], list[str]]) -> dict[str, Tier]:
    """Tier by lower-case id and by each of `names(tier)` (its display names in every locale)."""
    found: dict[str, Tier] = {}
    for tier in rules.tiers:
        for key in (tier.id, *names(tier)):
            found.setdefault(key.casefold(), tier)
    return found
