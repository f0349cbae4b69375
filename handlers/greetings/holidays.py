"""The greeting calendar: which holidays fall in a date range, solar (`holidays` CN), lunar (`lunardate`)
and the shop's own yearly days from the configuration. Pure: dates in, occurrences out, no I/O.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from functools import lru_cache

import holidays
from lunardate import LunarDate

SOLAR_IDS: dict[str, str] = {"new_year": "元旦", "qingming": "清明节", "labour_day": "劳动节", "national_day": "国庆节"}
"""Holiday id -> its name in the `holidays` China calendar (zh_CN, the library's own language)."""

SOLAR_FALLBACK: dict[str, tuple[int, int]] = {"new_year": (1, 1), "labour_day": (5, 1), "national_day": (10, 1)}
"""Fixed dates used when the library has no data for a year (Qingming moves, so it has no fallback)."""

LUNAR_IDS: dict[str, tuple[int, int]] = {
    "spring_festival": (1, 1),
    "lantern": (1, 15),
    "dragon_boat": (5, 5),
    "qixi": (7, 7),
    "mid_autumn": (8, 15),
    "double_ninth": (9, 9),
}
"""Holiday id -> (lunar month, day). New Year's Eve (除夕) is the day before lunar 1/1, see below."""

BUILTIN_IDS: tuple[str, ...] = (
    "new_year", "new_years_eve", "spring_festival", "lantern", "qingming", "labour_day", "dragon_boat", "qixi",
    "mid_autumn", "double_ninth", "national_day",
)  # fmt: skip
"""Every built-in holiday id, in calendar order; names and greetings are in the catalog (`holiday.*`)."""

LUNAR_YEARS = range(1901, 2100)
"""Years lunardate can convert (its table covers 1900-2099)."""


@dataclass(frozen=True, slots=True)
class Occurrence:
    """One holiday on one day."""

    id: str
    day: date
    custom: bool = False
    """A shop's own day from the configuration (its name and text come from there)."""


@lru_cache(maxsize=32)
def _solar_days(year: int) -> dict[str, date]:
    """The first day of each solar public holiday in `year`, from the `holidays` China calendar."""
    found: dict[str, date] = {}
    try:
        table = holidays.country_holidays("CN", years=year, language="zh_CN")
    except NotImplementedError:  # a year the library does not cover
        table = {}
    by_name = {name: hid for hid, name in SOLAR_IDS.items()}
    for day, name in sorted(table.items()):
        hid = by_name.get(name)  # exact name: '劳动节（补假）' (an observed day off) is not the holiday
        if hid is not None and hid not in found:
            found[hid] = day
    for hid, (month, dom) in SOLAR_FALLBACK.items():
        found.setdefault(hid, date(year, month, dom))
    return found


@lru_cache(maxsize=32)
def _lunar_days(year: int) -> dict[str, date]:
    """The lunar holidays of lunar year `year`; all of them (1/1 to 9/9) fall in Gregorian `year` too."""
    if year not in LUNAR_YEARS:
        return {}
    found = {hid: LunarDate(year, month, dom).to_solar_date() for hid, (month, dom) in LUNAR_IDS.items()}
    found["new_years_eve"] = found["spring_festival"] - timedelta(days=1)
    return found


def _custom_day(year: int, month_day: str) -> date | None:
    """A configured 'MM-DD' in `year`; 02-29 only exists in leap years."""
    month, dom = int(month_day[:2]), int(month_day[3:])
    if (month, dom) == (2, 29) and not calendar.isleap(year):
        return None
    try:
        return date(year, month, dom)
    except ValueError:
        return None


def occurrences(start: date, end: date, custom: Iterable[tuple[str, str]] = ()) -> list[Occurrence]:
    """Every holiday from `start` to `end` (both included), by day then calendar order.

    `custom` is (id, 'MM-DD') of the shop's own days; an id that repeats a built-in one is ignored."""
    custom_days = [(cid, md) for cid, md in custom if cid not in BUILTIN_IDS]
    order = {hid: n for n, hid in enumerate(BUILTIN_IDS)}
    found: list[Occurrence] = []
    for year in range(start.year, end.year + 1):
        days = {**_solar_days(year), **_lunar_days(year)}
        found += [Occurrence(hid, day) for hid, day in days.items()]
        for cid, month_day in custom_days:
            day = _custom_day(year, month_day)
            if day is not None:
                found.append(Occurrence(cid, day, custom=True))
    within = [occ for occ in found if start <= occ.day <= end]
    return sorted(within, key=lambda occ: (occ.day, order.get(occ.id, len(order)), occ.id))


def next_occurrence(
    holiday_id: str, after: date, custom: Iterable[tuple[str, str]] = (), years: int = 5
) -> Occurrence | None:
    """The first occurrence of `holiday_id` on or after `after` (within `years` years), if any."""
    custom_days = [(cid, md) for cid, md in custom if cid == holiday_id]
    for occ in occurrences(after, after + timedelta(days=366 * years), custom_days):
        if occ.id == holiday_id:
            return occ
    return None
