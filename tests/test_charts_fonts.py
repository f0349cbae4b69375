"""Charts draw Chinese on a machine with no CJK font installed: the font comes with the `mplfonts` package
(Noto Sans CJK SC), is registered once per process, lazily, from any thread, without touching rcParams or
matplotlib's data directory; labels render as the font's glyphs (no '#n' stand-ins, no missing-glyph warnings,
no tofu boxes); long titles and labels wrap to fit the picture; the weekly report chart is in the configured
language."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fontTools.ttLib import TTFont
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties, findfont
from matplotlib.text import Text
from PIL import Image

import handlers.stats.chart
import handlers.stats.commands
from bot.app.config import Settings
from handlers.shared.charts import (
    bar_chart,
    bar_figure,
    bundled_font,
    cjk_font,
    display_width,
    font,
    new_figure,
    png,
    wrap_columns,
)
from handlers.stats.chart import ChartWords, weekly_figure
from handlers.stats.commands import weekly_report
from tests.chart_recorders import size_of
from tests.conftest import ChatDriver, RecordingPusher, settle, storage_for

ROOT = Path(__file__).resolve().parent.parent
DAYS = ["03-04", "03-05", "03-06", "03-07", "03-08", "03-09", "03-10"]
ZH = ["每周报表 2026-03-03 至 2026-03-09", "每日签到", "每日新会员", "积分：发放与兑换", "发放", "兑换"]
EN = ["Weekly report 2026-03-03 to 2026-03-09", "Check-ins per day", "New members per day",
      "Points issued vs redeemed", "issued", "redeemed"]  # fmt: skip
"""The weekly report's words in each language, for the seven days before 2026-03-10 (the test clock)."""
LONG_TITLE = ("本周会员活动总结：签到人数持续增长，新会员加入踊跃，积分发放与兑换均创下新高，"
              "感谢各位店员的辛勤付出与大力支持，下周继续加油！")


@contextmanager
def missing_glyphs() -> Iterator[list[str]]:
    """Collects matplotlib's "Glyph N (...) missing from font(s) ..." warnings (matplotlib 3.11 reports a glyph
    no font in the list has with a UserWarning when the text is drawn, and draws the Last Resort box)."""
    found: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield found
    found.extend(str(w.message) for w in caught if "missing from font" in str(w.message))


def texts_of(figure: Figure) -> list[str]:
    return [t.get_text() for t in figure.findobj(Text) if t.get_text()]


def pixels(picture: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(picture)) as image:
        return np.asarray(image.convert("L"))


def word(text: str, cjk: str | None) -> bytes:
    """`text` alone on a small picture, in the chart font with the Chinese font `cjk` (or DejaVu Sans only)."""
    figure = new_figure(1.5, 0.8)
    figure.text(0.5, 0.5, text, ha="center", va="center", fontproperties=font(24, cjk))
    return png(figure, dpi=100)


# --- the font ---------------------------------------------------------------------------------------------
_FRESH_PROCESS = """
import json, os, sys, threading
import matplotlib
from matplotlib.font_manager import FontProperties, findfont, fontManager

def settings():  # the stored values, read without resolving the 'backend' placeholder (that imports pyplot)
    return dict(dict.items(matplotlib.rcParams))

rc = settings()
data = sorted(os.listdir(os.path.join(matplotlib.get_data_path(), "fonts", "ttf")))
cache = sorted(os.listdir(matplotlib.get_cachedir()))
from handlers.shared import charts

path = str(charts.bundled_font())
before = [f.name for f in fontManager.ttflist if f.fname == path]
start = threading.Barrier(8)
chosen = []

def choose():
    start.wait()
    chosen.append(charts.cjk_font())

threads = [threading.Thread(target=choose) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
family = chosen[0]
print(json.dumps({
    "before": before,
    "chosen": chosen,
    "entries": [f.name for f in fontManager.ttflist if f.fname == path],
    "resolves_to": findfont(FontProperties(family=family), fallback_to_default=False) == path,
    "rc_same": settings() == rc and "matplotlib.pyplot" not in sys.modules,
    "data_same": sorted(os.listdir(os.path.join(matplotlib.get_data_path(), "fonts", "ttf"))) == data,
    "cache_same": sorted(os.listdir(matplotlib.get_cachedir())) == cache,
    "mplfonts_imported": "mplfonts" in sys.modules,
}))
"""


def test_the_bundled_font_is_registered_once_lazily_from_any_thread_and_touches_no_global_settings() -> None:
    """A fresh process: eight threads ask for the font at once; it is registered once, in memory only."""
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # as tests/test_charts_off_loop.py
    done = subprocess.run([sys.executable, "-c", _FRESH_PROCESS], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    facts = json.loads(done.stdout)
    assert facts["before"] == []  # importing the chart module registers nothing
    assert facts["chosen"] == ["Noto Sans CJK SC"] * 8
    assert facts["entries"].count("Noto Sans CJK SC") == 1  # not once per thread
    assert facts["resolves_to"]  # the family is the bundled file
    assert facts["rc_same"] and facts["data_same"] and facts["cache_same"]
    assert not facts["mplfonts_imported"]  # its use_font() would set rcParams: only its file is used


def test_the_bundled_font_is_mplfonts_noto_sans_cjk_sc() -> None:
    path = bundled_font()
    assert path is not None and path.name == "NotoSansCJKsc-Regular.otf" and path.parent.parent.name == "mplfonts"
    assert cjk_font() == "Noto Sans CJK SC"
    assert Path(findfont(FontProperties(family="Noto Sans CJK SC"), fallback_to_default=False)) == path


# --- glyphs, not boxes ----------------------------------------------------------------------------------
def test_chinese_labels_are_drawn_as_themselves_with_no_missing_glyph() -> None:
    title, labels = "签到满意度（本周）", ["非常满意", "一般：还行", "不满意"]
    with missing_glyphs() as missing:
        figure = bar_figure(title, labels, [5, 3, 1], horizontal=True)
        picture = png(figure, dpi=100)
    assert missing == []
    drawn = texts_of(figure)
    assert title in drawn and all(label in drawn for label in labels)
    assert not any(text.startswith("#") for text in drawn)  # no '#1' stand-ins
    assert size_of(picture) == (700, 300)
    cmap = TTFont(str(bundled_font()), fontNumber=0, lazy=True).getBestCmap()
    assert all(ord(char) in cmap for char in title + "".join(labels) if not char.isspace())  # the font has each


def test_the_weekly_chart_draws_its_chinese_words_with_no_missing_glyph() -> None:
    with missing_glyphs() as missing:
        figure = weekly_figure(ChartWords(*ZH), DAYS, [1] * 7, [2] * 7, [30] * 7, [10] * 7)
        png(figure, dpi=90)
    assert missing == []
    assert set(ZH) <= set(texts_of(figure))


def test_chinese_is_drawn_as_glyphs_not_the_boxes_of_a_latin_only_font() -> None:
    """DejaVu Sans alone draws every Chinese character as the same box (and warns); the chart font draws two
    characters as two different glyphs, and neither as that box."""
    with missing_glyphs() as missing:
        box_sign, box_arrive, box_both = word("签", None), word("到", None), word("签到", None)
    assert len(missing) == 4 and "missing from font(s) DejaVu Sans" in missing[0]  # the check would see a box
    assert np.array_equal(pixels(box_sign), pixels(box_arrive))  # tofu: one box for any character
    with missing_glyphs() as missing:
        sign, arrive = word("签", cjk_font()), word("到", cjk_font())
        both = word("签到", cjk_font())
    assert missing == []
    assert not np.array_equal(pixels(sign), pixels(arrive))
    assert not np.array_equal(pixels(sign), pixels(box_sign))
    assert not np.array_equal(pixels(both), pixels(box_both))
    assert (pixels(sign) < 128).sum() > (pixels(box_sign) < 128).sum() * 0.5  # ink, not a blank


# --- wrapping -------------------------------------------------------------------------------------------
def test_display_width_counts_chinese_as_two_columns() -> None:
    assert display_width("签到ab") == 6
    assert display_width("，。") == 4 and display_width("e\u0301") == 1  # full-width punctuation; a combining mark


def test_wrapping_by_columns_breaks_chinese_anywhere_and_latin_at_spaces() -> None:
    text = "您对本次服务满意吗？请打分，谢谢您的支持与配合。"
    lines = wrap_columns(text, 10)
    assert "".join(lines) == text and len(lines) > 1
    assert all(display_width(line) <= 10 for line in lines)
    assert wrap_columns("hello world foo", 11) == ["hello world", "foo"]
    assert wrap_columns("abcdefghij", 4) == ["abcd", "efgh", "ij"]  # a word longer than a line
    assert wrap_columns("签到 hello 世界", 8) == ["签到", "hello 世", "界"]
    assert wrap_columns("一二三四，五六", 8) == ["一二三", "四，五六"]  # no line starts with '，'
    assert wrap_columns("一二三（四五）", 8) == ["一二三", "（四五）"]  # '（' stays with what follows
    assert wrap_columns("一\n二", 10) == ["一", "二"] and wrap_columns("", 5) == [""]


def fits_the_figure(figure: Figure, text: Text) -> list[str]:
    """The lines of `text`, drawn, after checking each and the whole lie inside the figure."""
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    box = text.get_window_extent(renderer)
    assert 0 <= box.x0 and box.x1 <= figure.bbox.width and box.y1 <= figure.bbox.height
    lines = text.get_text().split("\n")
    for line in lines:
        width, _, _ = renderer.get_text_width_height_descent(line, text.get_fontproperties(), ismath=False)
        assert width <= figure.bbox.width
    return lines


def test_a_long_chinese_title_wraps_onto_lines_that_fit_the_picture() -> None:
    assert len(LONG_TITLE) >= 60
    figure = bar_figure(LONG_TITLE, ["满意", "一般"], [3, 1])
    (title,) = figure.texts
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]
    whole, _, _ = renderer.get_text_width_height_descent(LONG_TITLE, title.get_fontproperties(), ismath=False)
    assert whole > figure.bbox.width  # on one line it would be clipped
    lines = fits_the_figure(figure, title)
    assert len(lines) >= 2 and "".join(lines) == LONG_TITLE  # no character lost
    assert figure.get_size_inches()[1] > 4  # taller than a one-line chart, to hold the lines
    axes = figure.axes[0]
    assert title.get_window_extent().y0 >= axes.get_window_extent().y1  # above the bars, not over them
    assert size_of(png(figure, dpi=100))[1] > 400


def test_long_poll_options_wrap_and_stay_inside_the_picture() -> None:
    option = "非常满意，店员热情周到而且专业，下次一定还会再来光顾"
    figure = bar_figure("满意度", [option, "一般", "满意", "不满意"], [3, 1, 2, 0], horizontal=True)
    label = next(t for t in figure.axes[0].get_yticklabels() if t.get_text().replace("\n", "") == option)
    lines = fits_the_figure(figure, label)
    assert len(lines) >= 2
    assert label.get_window_extent().x0 >= 0  # not cut off at the left edge
    short = bar_figure("满意度", ["很好", "一般", "满意", "不满意"], [3, 1, 2, 0], horizontal=True)
    assert figure.get_size_inches()[1] > short.get_size_inches()[1]  # room for the extra line


def test_the_weekly_chart_wraps_a_long_title_above_its_first_heading() -> None:
    words = ChartWords(LONG_TITLE, "每日签到", "每日新会员", "积分：发放与兑换", "发放", "兑换")
    figure = weekly_figure(words, DAYS, [1] * 7, [2] * 7, [30] * 7, [10] * 7)
    (title,) = figure.texts
    lines = fits_the_figure(figure, title)
    assert len(lines) >= 2 and "".join(lines) == LONG_TITLE
    heading = figure.axes[0].title
    assert title.get_window_extent().y0 > heading.get_window_extent().y1  # no overlap
    assert figure.get_size_inches()[1] > 9


def test_short_titles_keep_the_usual_sizes() -> None:
    assert size_of(bar_chart("#1 满意度", ["1", "2", "3", "4", "5"], [1, 0, 3, 10, 6])) == (700, 400)


# --- the weekly report speaks the configured language ---------------------------------------------------
@pytest.fixture
def settings(tmp_path: Path, migrated_db: Path, request: pytest.FixtureRequest) -> Settings:
    import shutil

    shutil.copy(migrated_db, tmp_path / "vip.db")
    return Settings(locale=request.param, storage=storage_for(tmp_path / "vip.db"))


class Drawn:
    """Stands in for `weekly_chart` in handlers.stats.commands: draws the real figure and keeps its texts,
    the thread it ran on and any missing-glyph warnings."""

    def __init__(self) -> None:
        self.texts: list[list[str]] = []
        self.threads: list[int] = []
        self.missing: list[str] = []

    def __call__(self, *args: Any) -> bytes:
        self.threads.append(threading.get_ident())
        with missing_glyphs() as missing:
            figure = weekly_figure(*args)
            picture = png(figure, dpi=90)
        self.missing.extend(missing)
        self.texts.append(texts_of(figure))
        return picture


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> Drawn:
    recorder = Drawn()
    monkeypatch.setattr(handlers.stats.commands, "weekly_chart", recorder)
    return recorder




@pytest.mark.parametrize(("settings", "expected", "foreign"), [("zh_CN", ZH, EN), ("en", EN, ZH)],
                         indirect=["settings"], ids=["zh_CN", "en"])  # fmt: skip
async def test_the_weekly_report_chart_is_in_the_configured_language(
    chat: ChatDriver, pusher: RecordingPusher, drawn: Drawn, expected: list[str], foreign: list[str]
) -> None:
    await weekly_report(chat.runtime.deps)  # the clock says 2026-03-10: the seven full days before it
    await settle(chat.runtime)
    (texts,) = drawn.texts
    assert all(word in texts for word in expected)
    assert not any(word in texts for word in foreign)
    assert drawn.missing == []
    assert len(pusher.images) == 1


@pytest.mark.parametrize("settings", ["zh_CN"], indirect=True)
async def test_report_chooses_the_font_off_the_event_loop(
    chat: ChatDriver, drawn: Drawn, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Choosing the font (on the first chart: importing matplotlib, registering the font) happens on the
    drawing thread, like the drawing; the /report chart is in Chinese."""
    asked: list[int] = []
    real: Callable[[], str | None] = handlers.stats.chart.cjk_font

    def recorded() -> str | None:
        asked.append(threading.get_ident())
        return real()

    monkeypatch.setattr(handlers.stats.chart, "cjk_font", recorded)
    (reply,) = await chat.replies("boss", "/report")
    assert reply.image is not None
    assert asked and threading.get_ident() not in asked
    assert threading.get_ident() not in drawn.threads
    assert "每周报表 2026-03-04 至 2026-03-10" in drawn.texts[0] and "每日签到" in drawn.texts[0]
