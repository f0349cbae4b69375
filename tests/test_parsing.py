"""Parsing commands and arguments from arbitrary text: exact cases and properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from handlers.parsing import parse_amount_fen, parse_command, parse_keyword, parse_month_day, parse_points


def test_command_forms() -> None:
    assert parse_command("/checkin") is not None
    parsed = parse_command("/CheckIn@VIP_Bot  a  b ")
    assert parsed is not None and (parsed.name, parsed.bot, parsed.args) == ("checkin", "vip_bot", "a  b")
    assert parse_command("checkin") is None
    assert parse_command("/") is None
    assert parse_command("/签到") is None


def test_keywords_with_and_without_space() -> None:
    words = {"签到", "兑换"}
    assert parse_keyword("签到", words) is not None
    parsed = parse_keyword("兑换3", words)
    assert parsed is not None and (parsed.name, parsed.args) == ("兑换", "3")
    assert parse_keyword("签到了吗", words) is None
    glued = parse_keyword("投诉快递太慢", {"投诉"}, frozenset({"投诉"}))
    assert glued is not None and (glued.name, glued.args) == ("投诉", "快递太慢")


def test_amounts_and_points() -> None:
    assert parse_amount_fen("199.90") == 19990
    assert parse_amount_fen("¥1,299") == 129900
    assert parse_amount_fen("0.01") == 1
    for bad in ("0", "-5", "1.999", "abc", "1e3", "nan", ""):
        assert parse_amount_fen(bad) is None
    assert parse_points("50", 100) == 50
    for bad in ("0", "-1", "101", "1.5", "1e2", ""):
        assert parse_points(bad, 100) is None


def test_month_day() -> None:
    assert parse_month_day("02-29") == (2, 29)
    assert parse_month_day("0815") == (8, 15)
    assert parse_month_day("02-30") is None
    assert parse_month_day("2-29-2000") is None


@given(st.text())
def test_parsers_never_raise(text: str) -> None:
    parse_command(text)
    parse_keyword(text, {"签到", "积分", "兑换"})
    parse_month_day(text)
    parse_points(text, 100_000)
    parse_amount_fen(text)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zs", "Zl", "Zp")), min_size=1))
def test_command_arguments_survive_intact(args: str) -> None:
    parsed = parse_command(f"/award {args}")
    assert parsed is not None and parsed.args == args.strip()


@given(st.integers(min_value=1, max_value=10_000_000_00))
def test_amounts_round_trip(fen: int) -> None:
    assert parse_amount_fen(f"{fen // 100}.{fen % 100:02d}") == fen
