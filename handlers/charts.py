"""Bar charts as PNG bytes (matplotlib, no screen needed) for poll results and staff reports."""

from __future__ import annotations

import io
from collections.abc import Sequence
from functools import cache

import matplotlib

matplotlib.use("Agg")  # render to memory; there is no display

import matplotlib.pyplot as plt
from matplotlib import font_manager

_CJK_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei", "Microsoft YaHei", "PingFang SC")


@cache
def _cjk_font() -> str | None:
    """A installed font that can draw Chinese, if any."""
    installed = {f.name for f in font_manager.fontManager.ttflist}
    return next((name for name in _CJK_FONTS if name in installed), None)


def _drawable(label: str, fallback: str) -> str:
    """The label itself when the fonts at hand can draw it, else `fallback` (e.g. '#2')."""
    if label.isascii() or _cjk_font() is not None:
        return label
    return fallback


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    horizontal: bool = False,
    value_format: str = "{:g}",
    fallback_title: str = "",
) -> bytes:
    """A bar chart with each bar's value written on it, as PNG bytes."""
    font = _cjk_font()
    if font is not None:
        plt.rcParams["font.sans-serif"] = [font, "DejaVu Sans"]
    names = [_drawable(label, f"#{i + 1}") for i, label in enumerate(labels)]
    figure, axes = plt.subplots(figsize=(7, max(3.0, 0.45 * len(labels) + 1.5)) if horizontal else (7, 4))
    try:
        if horizontal:
            bars = axes.barh(names[::-1], list(values)[::-1], color="#c0392b")
        else:
            bars = axes.bar(names, values, color="#c0392b")
        axes.bar_label(bars, labels=[value_format.format(v) for v in (list(values)[::-1] if horizontal else values)])
        axes.set_title(_drawable(title, fallback_title or "results"))
        axes.spines[["top", "right"]].set_visible(False)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()
    finally:
        plt.close(figure)
