"""Bar charts as PNG bytes for poll results and staff reports, drawn with matplotlib's object API.

Each picture is its own `Figure` on its own Agg canvas (memory, no screen), and its fonts are chosen per
figure (`font`): nothing here imports pyplot, picks a backend or touches `matplotlib.rcParams`, so drawing
keeps no global state and two charts can be drawn on two threads at once. Drawing takes a moment (tens to
hundreds of milliseconds), so the drawing functions are plain and synchronous and callers run them off the
event loop with `draw` (a worker thread), outside any transaction.

Chinese is drawn with Noto Sans CJK SC (SIL Open Font License), the font file the `mplfonts` package ships:
`cjk_font` registers that one file with matplotlib's font manager, in memory, once per process, when the first
chart is drawn (a few milliseconds: FreeType reads the 16 MB file lazily). It is preferred to any font the
machine has, so a chart looks the same everywhere; an installed CJK font is used only when the bundled file
is missing or unreadable. mplfonts' own `use_font`/`install` are not called: they set `rcParams` and copy fonts
into matplotlib's data directory. Long titles and labels are wrapped onto several lines (`wrap`, by measured
width: Chinese has no spaces to break at), and the figure grows to hold them.
"""

from __future__ import annotations

import asyncio
import importlib.util
import io
import re
import threading
import unicodedata
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, TypeVar

if TYPE_CHECKING:  # matplotlib is imported when the first chart is drawn, off the loop: it costs ~0.8 s at start-up
    from matplotlib.figure import Figure
    from matplotlib.font_manager import FontProperties

P = ParamSpec("P")
T = TypeVar("T")

_BUNDLED = ("mplfonts", "fonts", "NotoSansCJKsc-Regular.otf")
"""The CJK font charts use: package, folder, file (Noto Sans CJK SC Regular, SIL OFL 1.1)."""
_CJK_FONTS = ("Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Zen Hei", "SimHei", "Microsoft YaHei", "PingFang SC")
"""Installed fonts that draw Chinese, in order of preference, for when the bundled one cannot be loaded."""
_LATIN_FONT = "DejaVu Sans"  # shipped with matplotlib
_RED = "#c0392b"
_TITLE_SIZE = 12.0
_LABEL_SIZE = 10.0  # matplotlib's default size of tick labels
_LINE = 1.2 / 72  # inches per point of font size, per line of text (matplotlib's line spacing is 1.2)

_font_lock = threading.Lock()
_font_chosen: list[str | None] = []  # empty until chosen; then [the family, or None]


def bundled_font() -> Path | None:
    """The font file charts use for Chinese (mplfonts' Noto Sans CJK SC), when the package and file are there.
    Found without importing mplfonts."""
    package, *parts = _BUNDLED
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder).joinpath(*parts)
        if path.is_file():
            return path
    return None


def _register(path: Path) -> str | None:
    """Add the font file to matplotlib's font manager (this process only, in memory; once) and return its
    family name, or None when the file cannot be read as a font."""
    from matplotlib.font_manager import fontManager

    fname = str(path)
    known = [f for f in fontManager.ttflist if f.fname == fname]
    if not known:
        try:
            fontManager.addfont(fname)
        except (OSError, RuntimeError, ValueError):  # truncated, a Git LFS pointer, not a font
            return None
        known = [f for f in fontManager.ttflist if f.fname == fname]
    return known[0].name if known else None


def _choose() -> str | None:
    path = bundled_font()
    family = _register(path) if path is not None else None
    if family is not None:
        return family
    from matplotlib.font_manager import fontManager

    installed = {f.name for f in fontManager.ttflist}
    return next((name for name in _CJK_FONTS if name in installed), None)


def cjk_font() -> str | None:
    """The font family charts draw Chinese with: the bundled Noto Sans CJK SC (registered on the first call),
    else an installed CJK font, else None. Thread-safe; chosen once per process."""
    if not _font_chosen:
        with _font_lock:
            if not _font_chosen:
                _font_chosen.append(_choose())
    return _font_chosen[0]


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


# --- wrapping ---------------------------------------------------------------------------------------------
_OPENING = frozenset("([{（［｛「『【〔〈《“‘")
"""Never at the end of a line: kept with what follows."""
_CLOSING = frozenset(")]}），。、；：？！」』】〕〉》”’…,.;:?!%")
"""Never at the start of a line: kept with what precedes."""
_PIECE = re.compile(r"\s+|[^\s\u1100-\U0010ffff]+|.", re.DOTALL)


def display_width(text: str) -> int:
    """Columns the text takes in a terminal's terms: a wide (Chinese) character 2, a combining mark 0, others 1."""
    return sum(0 if unicodedata.combining(c) else 2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def _wide(piece: str) -> bool:
    return len(piece) == 1 and display_width(piece) == 2


def _pieces(line: str) -> list[str]:
    """The line cut where it may break: between wide characters, at spaces, not inside a Latin word, not
    before closing or after opening punctuation."""
    raw: list[str] = []
    for match in _PIECE.finditer(line):  # spaces, runs of narrow characters, single other characters
        piece = match.group()
        letter = len(piece) == 1 and not piece.isspace() and not _wide(piece) and piece not in _OPENING | _CLOSING
        if letter and raw and not raw[-1].isspace() and not _wide(raw[-1]):
            raw[-1] += piece  # a narrow letter past U+1100 (ẞ, €) stays in its word
        else:
            raw.append(piece)
    pieces: list[str] = []
    glue = False  # the last piece ends in opening punctuation: the next one joins it
    for piece in raw:
        if pieces and not piece.isspace() and (glue or (piece[0] in _CLOSING and not pieces[-1].isspace())):
            pieces[-1] += piece
        else:
            pieces.append(piece)
        glue = not piece.isspace() and pieces[-1][-1] in _OPENING
    return pieces


def wrap(text: str, fits: Callable[[str], bool]) -> list[str]:
    """`text` in lines that each `fits` (e.g. "no wider than the figure"), broken where `_pieces` allows and
    inside a piece only when it is too long for a line on its own. Existing line breaks are kept."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for piece in _pieces(paragraph):
            if piece.isspace():
                line += piece if line else ""
            elif fits((line + piece).rstrip()):
                line += piece
            else:
                if line.strip():
                    lines.append(line.rstrip())
                line = ""
                if fits(piece):
                    line = piece
                    continue
                for char in piece:  # one word too long for a line: break it anywhere
                    if line and not fits(line + char):
                        lines.append(line)
                        line = ""
                    line += char
        lines.append(line.rstrip())
    return lines


def wrap_columns(text: str, columns: int) -> list[str]:
    """`text` in lines of at most `columns` display columns (`display_width`)."""
    return wrap(text, lambda line: display_width(line) <= columns)


def fit(figure: Figure, text: str, prop: FontProperties, inches: float) -> list[str]:
    """`text` wrapped to lines that, drawn in `prop` on `figure`, are at most `inches` wide (measured by the
    figure's renderer: no drawing, a few microseconds a line)."""
    renderer = figure.canvas.get_renderer()  # type: ignore[attr-defined]  # Agg
    limit = inches * figure.dpi

    def fits(line: str) -> bool:
        width, _, _ = renderer.get_text_width_height_descent(line, prop, ismath=False)
        return bool(width <= limit)

    return wrap(text, fits)


def _drawable(label: str, fallback: str) -> str:
    """The label itself when the fonts at hand can draw it, else `fallback` (e.g. '#2')."""
    if label.isascii() or cjk_font() is not None:
        return label
    return fallback


def bar_figure(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    horizontal: bool = False,
    value_format: str = "{:g}",
    fallback_title: str = "",
) -> Figure:
    """The figure of `bar_chart`: 7 inches wide, as tall as its bars and wrapped title and labels need."""
    cjk = cjk_font()
    names = [_drawable(label, f"#{i + 1}") for i, label in enumerate(labels)]
    shown = list(values)
    width = 7.0
    figure = new_figure(width, 4)  # measuring needs a figure; its height is set once the lines are known
    heading = fit(figure, _drawable(title, fallback_title or "results"), font(_TITLE_SIZE, cjk), 0.94 * width)
    label_inches = 0.38 * width if horizontal else 0.9 * width / max(1, len(names))
    wrapped = [fit(figure, name, font(_LABEL_SIZE, cjk), label_inches) for name in names]
    title_extra = (len(heading) - 1) * _TITLE_SIZE * _LINE
    if horizontal:
        label_lines = sum(len(lines) for lines in wrapped)
        bars_height = 0.45 * len(names) + (label_lines - len(names)) * _LABEL_SIZE * _LINE
        figure.set_size_inches(width, max(3.0, bars_height + 1.5) + title_extra)
    else:
        tallest = max((len(lines) for lines in wrapped), default=1)
        figure.set_size_inches(width, 4 + title_extra + (tallest - 1) * _LABEL_SIZE * _LINE)
    names = ["\n".join(lines) for lines in wrapped]
    axes = figure.subplots()
    if horizontal:  # the first label on top
        names, shown = names[::-1], shown[::-1]
    positions = list(range(len(names)))
    if horizontal:
        bars = axes.barh(positions, shown, color=_RED)
        axes.set_yticks(positions, names, fontproperties=font(_LABEL_SIZE, cjk), parse_math=False)
    else:
        bars = axes.bar(positions, shown, color=_RED)
        axes.set_xticks(positions, names, fontproperties=font(_LABEL_SIZE, cjk), parse_math=False)
    axes.bar_label(bars, labels=[value_format.format(v) for v in shown], fontproperties=font(cjk=cjk))
    figure.suptitle("\n".join(heading), fontproperties=font(_TITLE_SIZE, cjk), parse_math=False)
    axes.spines[["top", "right"]].set_visible(False)
    figure.tight_layout()
    return figure


def bar_chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    *,
    horizontal: bool = False,
    value_format: str = "{:g}",
    fallback_title: str = "",
) -> bytes:
    """A bar chart with each bar's value written on it, as PNG bytes (synchronous: run it with `draw`).
    A long title or label is wrapped onto several lines, and the picture grows taller to hold them."""
    figure = bar_figure(title, labels, values, horizontal=horizontal, value_format=value_format,
                        fallback_title=fallback_title)  # fmt: skip
    return png(figure, dpi=100)
