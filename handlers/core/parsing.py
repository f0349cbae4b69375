"""Reading commands and their arguments out of free text, without trusting any of it."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import Decimal, InvalidOperation

INT64_MAX = 2**63 - 1
"""The largest integer SQLite stores: no number read from a message may exceed it."""


def normalise_digits(text: str) -> str:
    """`text` with every decimal digit of any script as its ASCII digit (全角 `１２` and Arabic-Indic `٣` too)
    and the full-width forms of ASCII (`＃`, `＋`, `－`, `：`) as ASCII, by NFKC; everything else unchanged.

    Circled (`①`) and superscript (`²`) digits are not decimal digits (``str.isdigit()`` accepts them, ``int()``
    does not): they stay as they are, so the number parsers below refuse them. Each character stays one
    character, so a position found in the result is the same position in `text`.
    """
    if text.isascii():
        return text
    out: list[str] = []
    for char in text:
        digit = unicodedata.decimal(char, None)
        if digit is not None:
            out.append(str(digit))
        elif "\uff01" <= char <= "\uff5e":
            out.append(unicodedata.normalize("NFKC", char))
        else:
            out.append(char)
    return "".join(out)


_INTEGER = re.compile(r"-?[0-9]{1,19}")


def parse_int(text: str, minimum: int = 0, maximum: int = INT64_MAX) -> int | None:
    """A whole number from `minimum` to `maximum` (which keep it within SQLite's range), or None.

    Digits of any script count (``normalise_digits``); anything else is refused: letters around the number
    (``abc5``, ``5x``), circled or superscript digits, fractions, spaces inside, a NUL, a number out of range.
    A minus sign is read, so ``-1`` is refused by any `minimum` above it rather than read as 1.
    """
    cleaned = normalise_digits(text.strip())
    if not _INTEGER.fullmatch(cleaned):
        return None
    value = int(cleaned)
    return value if minimum <= value <= maximum else None


_COMMAND = re.compile(r"^/([A-Za-z0-9_]{1,64})(?:@([A-Za-z0-9_]{1,64}))?(?:\s+(.*))?$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class ParsedCommand:
    name: str
    """Lower-case command name (a slash command) or the keyword as sent."""
    args: str
    bot: str | None = None
    """The bot named after '@', lower-case, if any."""
    slash: bool = True


def parse_command(text: str) -> ParsedCommand | None:
    """Split ``/cmd@bot args`` into its parts; None when the text is not a slash command."""
    text = text.strip()
    match = _COMMAND.match(text)
    if not match:
        return None
    name, bot, args = match.groups()
    return ParsedCommand(name.lower(), (args or "").strip(), bot.lower() if bot else None)


_BUTTON = re.compile(r"^v1:([a-z_]{1,32}):(.{0,56})$", re.DOTALL)


def parse_button(data: str) -> ParsedCommand | None:
    """Button callback data ``v1:<command>:<args>`` as the command it stands for."""
    match = _BUTTON.match(data)
    if not match:
        return None
    return ParsedCommand(match.group(1), match.group(2).strip(), None)


def parse_keyword(text: str, keywords: set[str], glued: frozenset[str] = frozenset()) -> ParsedCommand | None:
    """Match a plain-text keyword (e.g. 签到) at the start of the text, alone or followed by arguments.

    Chinese is written without spaces: a keyword may be followed directly by a number ("兑换3"), and a
    keyword in `glued` by any text at all ("投诉快递太慢").
    """
    text = text.strip()
    if not text:
        return None
    head, _, rest = text.partition(" ")
    if head in keywords:
        return ParsedCommand(head, rest.strip(), None, slash=False)
    for keyword in sorted(keywords, key=len, reverse=True):
        if text.startswith(keyword) and len(text) > len(keyword):
            after = text[len(keyword) :]
            # isdigit(), broader than the number parsers: "兑换②" reaches /redeem, which answers with its usage.
            if after[0].isdigit() or keyword in glued:
                return ParsedCommand(keyword, after.strip(), None, slash=False)
    return None


def parse_month_day(value: str) -> tuple[int, int] | None:
    """'MM-DD' (also M-D, MM/DD, MMDD) to (month, day); 02-29 is valid, 02-30 is not."""
    value = value.strip()
    match = re.fullmatch(r"([0-9]{1,2})[-/.]([0-9]{1,2})|([0-9]{2})([0-9]{2})", normalise_digits(value))
    if not match:
        return None
    month_s, day_s = (match.group(1), match.group(2)) if match.group(1) else (match.group(3), match.group(4))
    month, day = int(month_s), int(day_s)
    try:
        date(2000, month, day)  # a leap year, so 02-29 is accepted
    except ValueError:
        return None
    return month, day


def parse_points(value: str, maximum: int) -> int | None:
    """A positive whole number of points no larger than `maximum` (a leading '+' is fine)."""
    cleaned = normalise_digits(value.strip())
    return parse_int(cleaned[1:] if cleaned.startswith("+") else cleaned, 1, maximum)


def parse_amount_fen(value: str, maximum_yuan: int = 10_000_000) -> int | None:
    """A yuan amount ('199', '199.9', '¥199.90') as fen; None unless 0 < amount <= maximum."""
    cleaned = normalise_digits(value.strip()).lstrip("¥￥").replace(",", "")
    if not re.fullmatch(r"[0-9]{1,9}(\.[0-9]{1,2})?", cleaned):
        return None
    try:
        amount = Decimal(cleaned)
    except InvalidOperation:
        return None
    if amount <= 0 or amount > maximum_yuan:
        return None
    return int(amount * 100)


def yuan_text(fen: int) -> str:
    """Fen as a yuan amount for display, e.g. 19990 -> '199.90'."""
    return f"{fen / 100:.2f}"


def split_first(args: str) -> tuple[str, str]:
    head, _, rest = args.strip().partition(" ")
    return head, rest.strip()


def looks_like_target(token: str) -> bool:
    """An '@username' or a member's number (a positive id within SQLite's range)."""
    return bool(re.fullmatch(r"@\w{1,64}", token)) or parse_int(token, 1) is not None


_LOCAL_DATETIME = re.compile(r"^\s*([0-9]{4})[-/.]([0-9]{1,2})[-/.]([0-9]{1,2})[ T]+([0-9]{1,2}):([0-9]{2})(?:\s+|$)")


def parse_local_datetime(text: str, zone: tzinfo) -> tuple[datetime, str] | None:
    """A leading 'YYYY-MM-DD HH:MM' in the shop's zone, and the text after it; None if malformed."""
    match = _LOCAL_DATETIME.match(normalise_digits(text))  # the same length: match.end() holds in `text`
    if not match:
        return None
    year, month, day, hour, minute = (int(g) for g in match.groups())
    try:
        when = datetime(year, month, day, hour, minute, tzinfo=zone)
    except ValueError:
        return None
    return when, text[match.end() :].strip()


def extract_flags(text: str, names: dict[str, bool]) -> tuple[dict[str, str | bool], str]:
    """Pull ``--name`` (or ``--name value`` / ``--name=value`` where names[name] is True) out of the text.

    Only the given names are recognised; everything else, line breaks included, is left as it was.
    """
    found: dict[str, str | bool] = {}
    for name, takes_value in names.items():
        if takes_value:
            pattern = re.compile(rf"(?:^|(?<=\s))--{name}(?:=|\s+)(\S+)(?=\s|$)")
        else:
            pattern = re.compile(rf"(?:^|(?<=\s))--{name}(?=\s|$)")
        match = pattern.search(text)
        if match:
            found[name] = match.group(1) if takes_value else True
            text = (text[: match.start()] + text[match.end() :]).strip()
    return found, text.strip()


def parse_id(text: str) -> int | None:
    """A positive record number such as an event or announcement id (a leading '#' is fine)."""
    text = normalise_digits(text.strip())
    return parse_int(text[1:] if text.startswith("#") else text, 1)


_OPTION = re.compile(r"(?:^|\s)([a-z_]+)=(\d{4}[-/.]\d{1,2}[-/.]\d{1,2}[ T]\d{1,2}:\d{2}|\S+)")


def parse_options(text: str) -> dict[str, str]:
    """``price=99 stock=20 start=2026-12-01 10:00`` as a dict; a date-time value may contain its space."""
    return {m.group(1): m.group(2) for m in _OPTION.finditer(text)}


def option_leftovers(text: str) -> str:
    """What is left of `text` once the key=value options are taken out (should be empty)."""
    return _OPTION.sub(" ", text).strip()
