"""CSV exports for staff: every file the bot hands out is written here, so every cell is escaped the same way.

A spreadsheet program runs a cell that starts with ``=``, ``+``, ``-`` or ``@`` (and some programs one that
starts with a tab or a carriage return) as a formula, so a member named ``=HYPERLINK(...)`` would become a link
or a command on the staff member's computer (CSV / formula injection). Such a text cell gets a leading ``'``,
which the program shows as text; numbers are written as they are.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: object) -> object:
    """A cell as a spreadsheet program shows it as typed: a text that could start a formula gets a leading quote."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def csv_document(header: Sequence[object], rows: Iterable[Sequence[object]]) -> bytes:
    """A CSV file of `header` and `rows`, every cell escaped by `safe_cell`, in UTF-8 with a BOM (so
    spreadsheet programs read Chinese names right)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([safe_cell(cell) for cell in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
    return buffer.getvalue().encode("utf-8-sig")
