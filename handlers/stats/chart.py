"""The weekly report as one PNG: check-ins, new members, and points issued against points redeemed, per day.
Its words come from the caller in the configured language; on a machine without a Chinese font, words it
cannot draw are replaced by their ASCII fallback. Drawn like every chart (handlers/shared/charts.py): its own
figure and fonts, no global matplotlib state, synchronous, run off the event loop with `charts.draw`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields

from handlers.shared.charts import cjk_font, font, new_figure, png

_RED = "#c0392b"
_BLUE = "#2c7fb8"
_GREEN = "#27ae60"


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


def weekly_chart(
    words: ChartWords,
    days: Sequence[str],
    checkins: Sequence[int],
    new_members: Sequence[int],
    issued: Sequence[int],
    redeemed: Sequence[int],
) -> bytes:
    """Three bar charts stacked in one picture, one bar (or pair) per day; `days` are ASCII labels ('03-04').
    Synchronous: run it with `charts.draw`."""
    cjk = cjk_font()
    labels = list(days)
    positions = list(range(len(labels)))
    figure = new_figure(8, 9)
    top, middle, bottom = figure.subplots(3, 1)
    for axes, values, colour, heading in (
        (top, checkins, _RED, words.checkins),
        (middle, new_members, _BLUE, words.new_members),
    ):
        bars = axes.bar(positions, list(values), color=colour)
        axes.bar_label(bars, labels=[str(v) for v in values])
        axes.set_title(heading, fontproperties=font(10, cjk))
    width = 0.4
    given = bottom.bar([p - width / 2 for p in positions], list(issued), width, color=_GREEN, label=words.issued)
    spent = bottom.bar([p + width / 2 for p in positions], list(redeemed), width, color=_RED, label=words.redeemed)
    bottom.bar_label(given, labels=[str(v) for v in issued], fontsize=8)
    bottom.bar_label(spent, labels=[str(v) for v in redeemed], fontsize=8)
    bottom.set_title(words.points, fontproperties=font(10, cjk))
    bottom.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, prop=font(8, cjk), frameon=False)
    for axes in (top, middle, bottom):
        axes.set_xticks(positions, labels)
        axes.spines[["top", "right"]].set_visible(False)
        axes.margins(y=0.2)
        axes.yaxis.get_major_locator().set_params(integer=True)
        axes.ticklabel_format(axis="y", style="plain", useOffset=False)
    figure.suptitle(words.title, fontproperties=font(12, cjk))
    # Fixed margins instead of tight_layout(): the labels are short, and measuring them costs a draw.
    figure.subplots_adjust(left=0.1, right=0.98, top=0.92, bottom=0.04, hspace=0.4)
    return png(figure, dpi=90)
