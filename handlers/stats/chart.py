"""The weekly report as one PNG: check-ins, new members, and points issued against points redeemed, per day.
Its words come from the caller in the configured language and are drawn with the CJK font charts bring along
(`charts.cjk_font`: Noto Sans CJK SC from mplfonts); only if no font at all can draw Chinese (the bundled file
missing and none installed) are the words it cannot draw replaced by their ASCII fallback. Long words wrap, and
the picture grows taller to hold the extra lines. Drawn like every chart (handlers/shared/charts.py): its own
figure and fonts, no global matplotlib state, synchronous, run off the event loop with `charts.draw`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

from handlers.shared.charts import cjk_font, fit, font, new_figure, png

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_RED = "#c0392b"
_BLUE = "#2c7fb8"
_GREEN = "#27ae60"
_LINE = 1.2 / 72  # inches per point of font size, per line of text
# The layout in inches: the figure is 8 wide; from the bottom: margin, three axes with two gaps, top margin.
_WIDTH, _LEFT, _RIGHT = 8.0, 0.1, 0.98
_BOTTOM, _AXES, _GAP, _TOP = 0.36, 2.08, 0.84, 0.72
_TITLE_TOP = 0.18  # from the top edge to the top of the title


@dataclass(frozen=True, slots=True)
class ChartWords:
    """The words on the chart: its title, the three headings and the legend of the points chart."""

    title: str
    checkins: str
    new_members: str
    points: str
    issued: str
    redeemed: str


def drawable(words: ChartWords, fallback: ChartWords) -> ChartWords:
    """`words` where the fonts at hand can draw them, else `fallback`'s (ASCII) word in its place."""
    if cjk_font() is not None:
        return words
    names = [f.name for f in fields(ChartWords)]
    return ChartWords(*(getattr(words if getattr(words, n).isascii() else fallback, n) for n in names))


def weekly_figure(
    words: ChartWords,
    days: Sequence[str],
    checkins: Sequence[int],
    new_members: Sequence[int],
    issued: Sequence[int],
    redeemed: Sequence[int],
) -> Figure:
    """The figure of `weekly_chart`: 8 x 9 inches, taller when its title or headings need several lines."""
    cjk = cjk_font()
    labels = list(days)
    positions = list(range(len(labels)))
    figure = new_figure(_WIDTH, 9)  # measuring needs a figure; its height is set once the lines are known
    plot_width = (_RIGHT - _LEFT) * _WIDTH
    title = fit(figure, words.title, font(12, cjk), 0.94 * _WIDTH)
    headings = [fit(figure, words.checkins, font(10, cjk), 0.95 * plot_width),
                fit(figure, words.new_members, font(10, cjk), 0.95 * plot_width),
                fit(figure, words.points, font(10, cjk), 0.55 * plot_width)]  # the legend sits at the right
    title_extra = (len(title) - 1) * 12 * _LINE
    heading_extra = (max(len(lines) for lines in headings) - 1) * 10 * _LINE
    top = _TOP + title_extra + heading_extra
    gap = _GAP + heading_extra
    height = _BOTTOM + 3 * _AXES + 2 * gap + top  # 9 inches with one-line words
    figure.set_size_inches(_WIDTH, height)
    top_axes, middle, bottom = figure.subplots(3, 1)
    for axes, values, colour, heading in (
        (top_axes, checkins, _RED, headings[0]),
        (middle, new_members, _BLUE, headings[1]),
    ):
        bars = axes.bar(positions, list(values), color=colour)
        axes.bar_label(bars, labels=[str(v) for v in values])
        axes.set_title("\n".join(heading), fontproperties=font(10, cjk), parse_math=False)
    width = 0.4
    given = bottom.bar([p - width / 2 for p in positions], list(issued), width, color=_GREEN, label=words.issued)
    spent = bottom.bar([p + width / 2 for p in positions], list(redeemed), width, color=_RED, label=words.redeemed)
    bottom.bar_label(given, labels=[str(v) for v in issued], fontsize=8)
    bottom.bar_label(spent, labels=[str(v) for v in redeemed], fontsize=8)
    bottom.set_title("\n".join(headings[2]), fontproperties=font(10, cjk), parse_math=False)
    bottom.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, prop=font(8, cjk), frameon=False)
    for axes in (top_axes, middle, bottom):
        axes.set_xticks(positions, labels)
        axes.spines[["top", "right"]].set_visible(False)
        axes.margins(y=0.2)
        axes.yaxis.get_major_locator().set_params(integer=True)
        axes.ticklabel_format(axis="y", style="plain", useOffset=False)
    figure.suptitle("\n".join(title), fontproperties=font(12, cjk), y=1 - _TITLE_TOP / height, parse_math=False)
    # Fixed margins (in inches, grown by the extra lines) instead of tight_layout(): measuring costs a draw.
    figure.subplots_adjust(left=_LEFT, right=_RIGHT, top=1 - top / height, bottom=_BOTTOM / height,
                           hspace=gap / _AXES)  # fmt: skip
    return figure


def weekly_chart(
    words: ChartWords,
    days: Sequence[str],
    checkins: Sequence[int],
    new_members: Sequence[int],
    issued: Sequence[int],
    redeemed: Sequence[int],
) -> bytes:
    """Three bar charts stacked in one picture, one bar (or pair) per day; `days` are ASCII labels ('03-04').
    Long words wrap onto several lines. Synchronous: run it with `charts.draw`."""
    return png(weekly_figure(words, days, checkins, new_members, issued, redeemed), dpi=90)
