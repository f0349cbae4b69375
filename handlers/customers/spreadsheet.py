"""Spreadsheet files in and out: the rows of an .xlsx (openpyxl) or .csv (the csv module) file, and .xlsx/.csv
documents written with every text cell escaped as `handlers.shared.exports.safe_cell` does.

A CSV file is decoded strictly as UTF-8 (with or without a BOM) first, then as GB18030 (a superset of the GBK
that Chinese Excel writes). Both are exact tests: GBK text is almost never valid UTF-8, and GB18030 decodes
any GBK file. Only when neither fits (e.g. Excel's "Unicode text", UTF-16) does charset-normalizer guess:
guessing first would misread short Chinese files (a few names) as Big5 or a Latin code page.

An .xlsx file is opened read-only (rows streamed, not the whole workbook in memory), formulas not evaluated:
a cell holding a formula comes back as its text, which the import treats as data (and rejects where a phone
or a number is due).
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from handlers.shared.exports import csv_document, safe_cell

Cell = str | int | float | object | None
DECODE_CHUNK = 256 * 1024


class UnreadableFile(Exception):
    """The file is not a spreadsheet this import can read (wrong type, damaged, not text)."""


@dataclass(frozen=True, slots=True)
class Table:
    """The header row and the data rows of a file's first sheet, each row with its line number (1-based)."""

    header: list[str]
    header_line: int
    rows: list[tuple[int, list[Cell]]]


def _decode(data: bytes, encoding: str) -> str:
    """`data` decoded strictly, a piece at a time: one call over megabytes would hold the interpreter's lock
    (and so the event loop, from another thread) for that long."""
    decoder = codecs.getincrementaldecoder(encoding)("strict")
    parts = [decoder.decode(data[at : at + DECODE_CHUNK]) for at in range(0, len(data), DECODE_CHUNK)]
    parts.append(decoder.decode(b"", final=True))
    return "".join(parts)


def decode_text(data: bytes) -> str:
    """The text of a CSV file: UTF-8 (BOM or not), else GB18030/GBK, else what charset-normalizer finds."""
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            return _decode(data, encoding)
        except UnicodeDecodeError:
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise UnreadableFile("not a text file")
    return str(best)


def _table(lines: Iterable[tuple[int, list[Cell]]]) -> Table:
    """The first row with any content is the header; empty rows after it are dropped."""
    header: list[str] | None = None
    header_line = 0
    rows: list[tuple[int, list[Cell]]] = []
    for number, cells in lines:
        if all(c is None or (isinstance(c, str) and not c.strip()) for c in cells):
            continue
        if header is None:
            header, header_line = [("" if c is None else str(c)).strip() for c in cells], number
        else:
            rows.append((number, cells))
    if header is None:
        raise UnreadableFile("the file is empty")
    return Table(header, header_line, rows)


def _csv_lines(text: str) -> Iterable[tuple[int, list[Cell]]]:
    reader = csv.reader(io.StringIO(text, newline=""))
    start = 1
    for cells in reader:
        yield start, list(cells)
        start = reader.line_num + 1  # a quoted cell may span lines: a row is numbered by its first line


def read_csv(data: bytes) -> Table:
    try:
        return _table(_csv_lines(decode_text(data)))
    except csv.Error as exc:
        raise UnreadableFile(f"not a CSV file ({exc})") from exc


def read_xlsx(data: bytes) -> Table:
    try:
        from openpyxl import load_workbook  # imported when a workbook is read: it costs ~0.35 s at start-up

        book = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except (zipfile.BadZipFile, KeyError, OSError, ValueError) as exc:
        raise UnreadableFile(f"not an .xlsx workbook ({exc})") from exc
    try:
        sheet = book.worksheets[0] if book.worksheets else None
        if sheet is None:
            raise UnreadableFile("the workbook has no sheet")
        sheet.reset_dimensions()  # a size some programs write wrongly ("A1") would cut the rows short
        return _table((number, list(cells)) for number, cells in enumerate(sheet.iter_rows(values_only=True), 1))
    finally:
        book.close()


def read_table(path: Path) -> Table:
    """The rows of `path` by its ending (.xlsx, or .csv/.txt). Raises UnreadableFile."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UnreadableFile(exc.strerror or str(exc)) from exc
    return read_bytes(data, path.name)


def read_bytes(data: bytes, name: str) -> Table:
    suffix = Path(name).suffix.lower()
    if suffix in (".xlsx", ".xlsm"):
        return read_xlsx(data)
    if suffix in (".csv", ".txt"):
        return read_csv(data)
    raise UnreadableFile(f"{suffix or 'a file without an ending'} is not .xlsx or .csv")


def xlsx_document(header: Sequence[object], rows: Iterable[Sequence[object]], title: str = "members") -> bytes:
    """An .xlsx workbook of `header` and `rows` (one sheet, written in streaming mode), every cell escaped by
    `safe_cell`: a text that could start a formula is written as text with a leading quote, as in CSV."""
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet(title)
    sheet.append([safe_cell(cell) for cell in header])
    for row in rows:
        sheet.append([safe_cell(cell) for cell in row])
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def document(kind: str, header: Sequence[object], rows: Iterable[Sequence[object]]) -> bytes:
    """The file of `kind` ('csv' or 'xlsx')."""
    if kind == "xlsx":
        return xlsx_document(header, rows)
    return csv_document(header, rows)
