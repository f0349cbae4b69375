"""Bar charts as PNG bytes for poll results and staff reports, drawn with matplotlib's object API.

Each picture is its own `Figure` on its own Agg canvas (memory, no screen), and its fonts are chosen per
figure (`font`): nothing here imports pyplot, picks a backend or touches `matplotlib.rcParams`, so drawing
keeps no global state and two charts can be drawn on two threads at once. Drawing takes a moment (tens to
hundreds of milliseconds), so the drawing functions are plain and synchronous and callers run them off the
event loop with `draw` (a worker thread), outside any transaction.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:  # matplotlib is imported when the first chart is drawn, off the loop: it costs ~0.8 s at start-up
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

P = ParamSpec("P")
T = TypeVar("T")

_CJK_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei", "Microsoft YaHei", "PingFang SC")
_LATIN_FONT = "DejaVu Sans"  # shipped with matplotlib
_RED = "#c0392b"


@cache
def cjk_font() -> str | None:
    """An installed font that can draw Chinese, if any."""
    from matplotlib.font_manager import fontManager

    installed = {f.name for f in fontManager.ttflist}
    return next((name for name in _CJK_FONTS if name in installed), None)


def font(size: float | None = None, cjk: str | None = None) -> FontProperties:
    """The font of one piece of text: the Chinese font `cjk` (if any) first, the Latin one as fallback."""
    from matplotlib.font_manager import FontProperties

    return FontProperties(family=[cjk, _LATIN_FONT] if cjk else [_LATIN_FONT], size=size)


def new_figure(width: float, height: float) -> Figure:
    """A figure (inches) on its own Agg canvas: rendered to memory, no pyplot, no display."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height))
    FigureCanvasAgg(figure)
    return figure


def png(figure: Figure, dpi: int) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


async def draw(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run a drawing function on a worker thread, so the event loop goes on while it draws."""
    return await asyncio.to_thread(fn, *args, **kwargs)


def _drawable(label: str, fallback: str) -> str:
    """The label itself when the fonts at hand can draw it, else `fallback` (e.g. '#2')."""
    if label.isascii() or cjk_font() is not None:
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
    """A bar chart with each bar's value written on it, as PNG bytes (synchronous: run it with `draw`)."""
    cjk = cjk_font()
    names = [_drawable(label, f"#{i + 1}") for i, label in enumerate(labels)]
    shown = list(values)
    figure = new_figure(7, max(3.0, 0.45 * len(labels) + 1.5)) if horizontal else new_figure(7, 4)
    axes = figure.subplots()
    if horizontal:  # the first label on top
        names, shown = names[::-1], shown[::-1]
    positions = list(range(len(names)))
    if horizontal:
        bars = axes.barh(positions, shown, color=_RED)
        axes.set_yticks(positions, names, fontproperties=font(cjk=cjk))
    else:
        bars = axes.bar(positions, shown, color=_RED)
        axes.set_xticks(positions, names, fontproperties=font(cjk=cjk))
    axes.bar_label(bars, labels=[value_format.format(v) for v in shown], fontproperties=font(cjk=cjk))
    axes.set_title(_drawable(title, fallback_title or "results"), fontproperties=font(12, cjk))
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    return png(figure, dpi=100)
