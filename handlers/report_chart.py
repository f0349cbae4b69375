"""The weekly report as one PNG (matplotlib, no screen needed): check-ins, new members, and points issued
against points redeemed, per day. Labels are ASCII so that any machine's fonts can draw them.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # render to memory; there is no display

import matplotlib.pyplot as plt

_RED = "#c0392b"
_BLUE = "#2c7fb8"
_GREEN = "#27ae60"


def weekly_chart(
    title: str,
    days: Sequence[str],
    checkins: Sequence[int],
    new_members: Sequence[int],
    issued: Sequence[int],
    redeemed: Sequence[int],
) -> bytes:
    """Three bar charts stacked in one picture, one bar (or pair) per day; `days` are ASCII labels ('03-04')."""
    labels = list(days)
    positions = list(range(len(labels)))
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(8, 9))
    try:
        for axes, values, colour, heading in (
            (top, checkins, _RED, "Check-ins per day"),
            (middle, new_members, _BLUE, "New members per day"),
        ):
            bars = axes.bar(positions, list(values), color=colour)
            axes.bar_label(bars, labels=[str(v) for v in values])
            axes.set_title(heading, fontsize=10)
        width = 0.4
        given = bottom.bar([p - width / 2 for p in positions], list(issued), width, color=_GREEN, label="issued")
        spent = bottom.bar([p + width / 2 for p in positions], list(redeemed), width, color=_RED, label="redeemed")
        bottom.bar_label(given, labels=[str(v) for v in issued], fontsize=8)
        bottom.bar_label(spent, labels=[str(v) for v in redeemed], fontsize=8)
        bottom.set_title("Points issued vs redeemed", fontsize=10)
        bottom.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), ncols=2, fontsize=8, frameon=False)
        for axes in (top, middle, bottom):
            axes.set_xticks(positions, labels)
            axes.spines[["top", "right"]].set_visible(False)
            axes.margins(y=0.2)
            axes.yaxis.get_major_locator().set_params(integer=True)
            axes.ticklabel_format(axis="y", style="plain", useOffset=False)
        figure.suptitle(title)
        # Fixed margins instead of tight_layout(): the labels are short, and measuring them costs a draw.
        figure.subplots_adjust(left=0.1, right=0.98, top=0.92, bottom=0.04, hspace=0.4)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=90)
        return buffer.getvalue()
    finally:
        plt.close(figure)
