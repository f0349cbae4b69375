"""Parsing commands and arguments from arbitrary text: exact cases and properties."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from handlers.core.parsing import (
    INT64_MAX,
    looks_like_target,
    normalise_digits,
    parse_amount_fen,
    parse_command,
    parse_id,
    parse_int,
    parse_keyword,
    parse_local_datetime,
    parse_month_day,
    parse_points,
)
from tests.conftest import SHANGHAI


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


def test_digits_of_any_script_are_digits_and_look_alikes_are_refused() -> None:
    assert normalise_digits("＃１２ ٣ ۴ ५") == "#12 3 4 5"
    assert parse_int("１２") == 12 and parse_id("＃１２") == 12 and parse_points("＋５", 100) == 5
    assert parse_int("٣٣") == 33 and parse_amount_fen("１９９.９") == 19990
    assert parse_month_day("０８-１５") == (8, 15)
    parsed = parse_local_datetime("２０２６-１２-０１ １０:００ 第１名", SHANGHAI)
    assert parsed is not None and parsed[0].hour == 10 and parsed[1] == "第１名"  # the rest as it was typed
    for bad in ("①", "²", "1²", "⁵", "₅", "Ⅻ", "一", "abc5", "5abc", "5 5", "1.5", "1e3", "0x10", "5\x00", "", " "):
        assert parse_int(bad) is None and parse_id(bad) is None and parse_points(bad, 100) is None, repr(bad)
    assert parse_id("-1") is None and parse_id("0") is None and parse_id("#-1") is None
    assert parse_points("-1", 100) is None and parse_int("-1") is None and parse_int("-1", -5) == -1


def test_numbers_stay_within_sqlite() -> None:
    assert parse_int(str(INT64_MAX)) == INT64_MAX
    for too_big in (str(INT64_MAX + 1), "9" * 20, "1" * 5000):
        assert parse_int(too_big) is None and parse_id(too_big) is None, too_big[:25]
        assert not looks_like_target(too_big)
    assert looks_like_target("12345") and looks_like_target("@amy") and looks_like_target("１２")
    assert not looks_like_target("-12") and not looks_like_target("0") and not looks_like_target("①")


@given(st.text(max_size=30))
def test_parse_int_takes_only_what_int_reads_within_range(text: str) -> None:
    value = parse_int(text, 0, 10**6)
    if value is not None:
        assert 0 <= value <= 10**6 and int(normalise_digits(text)) == value
    stripped = text.strip()
    if stripped and stripped.isdigit() and not stripped.isdecimal():
        assert value is None  # circled, superscript...: isdigit() says yes, int() says no
    assert parse_id(text) is None or parse_id(text) >= 1  # type: ignore[operator]
