"""The thin dialect layer between the repositories' SQLite SQL and PostgreSQL (asyncpg).

The repositories keep one hand-written statement per query, in the subset both engines understand. What still
differs is rewritten here by a few small rules, each on the statement's code only (never inside a string
literal, a quoted identifier or a comment), and each translation is worked out once per statement text
(statements are constant strings):

- placeholders: `?` (positional) and `:name` (named, a name may repeat) become asyncpg's `$1 … $n`, with the
  parameters put in that order (`Translation.args`); `::` casts are left alone.
- `INSERT OR IGNORE INTO …` becomes `INSERT INTO … ON CONFLICT DO NOTHING` (before a `RETURNING`).
- the scalar `MAX(a, b, …)` / `MIN(a, b, …)` (two or more arguments) become `GREATEST` / `LEAST`. (SQLite's
  scalar forms return NULL when an argument is NULL; PostgreSQL's ignore NULLs.)
- `IFNULL(a, b)` becomes `COALESCE(a, b)`.
- `x IS y` / `x IS NOT y` (SQLite's null-safe comparison: y a parameter, a column, an expression; not NULL, TRUE
  or FALSE) become `IS [NOT] DISTINCT FROM`.
- a subquery in FROM or JOIN without an alias gets one (`AS _sub1`): PostgreSQL 15 requires it.
- `CASE WHEN ? THEN` (a parameter as the condition: SQLite's integer 0/1 flag) becomes `CASE WHEN ? <> 0 THEN`.
- `json_each(x) [alias]` becomes `jsonb_array_elements(CAST(x AS jsonb)) WITH ORDINALITY AS alias(value, key)`
  (alias `json_each` when none is given), so `value`, `alias.value` and `ORDER BY key` keep working; `key` counts
  from 1 instead of 0. `value` is `jsonb` there, and `->>` gives text: a statement that compares either with an
  integer needs a `CAST(… AS INTEGER)` (valid on both engines).
- `json_extract(x, '$[n]')` becomes `(x ->> n)` (text, see above).
- `strftime('%s', 'now')` becomes `CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)`.

Constructs with no faithful rewrite by such a rule raise `NonPortableStatement` naming them, at the first use of
the statement rather than as a wrong answer: `UPDATE OR IGNORE` / `OR REPLACE` / `OR ABORT`, `INSERT OR
REPLACE`, `REPLACE INTO`, `PRAGMA`, `sqlite_master`, `rowid`, `GLOB`, `julianday`, `strftime` with another
format, `json_extract` with another path, `group_concat`, `randomblob`, `last_insert_rowid()`, `changes()`, and a
statement mixing `?` with `:name`. (`COLLATE NOCASE` runs as it is: the PostgreSQL schema defines a
case-insensitive collation named `nocase`, usable for `=` but not for `LIKE`.)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = ["NonPortableStatement", "Translation", "bind", "translate"]


class NonPortableStatement(ValueError):
    """A statement uses a SQLite construct that the dialect layer cannot rewrite for PostgreSQL."""


@dataclass(frozen=True, slots=True)
class Translation:
    """A statement rewritten for PostgreSQL, and how its parameters are ordered."""

    sql: str
    names: tuple[str, ...] | None
    """The `:name` of each `$n` in order (a name may appear once though used several times), or None for a
    statement with `?` placeholders (or none at all), whose parameters keep their order."""
    count: int
    """How many `$n` the statement has."""

    def args(self, params: Iterable[Any] | Mapping[str, Any]) -> list[Any]:
        """The parameters in `$n` order. Raises ValueError for the wrong number or kind of parameters."""
        if self.names is not None:
            if not isinstance(params, Mapping):
                if not self.names:
                    params = {}
                else:
                    raise ValueError("this statement takes named parameters (a mapping)")
            try:
                return [params[name] for name in self.names]  # type: ignore[index]
            except KeyError as exc:
                raise ValueError(f"no value for the parameter :{exc.args[0]}") from None
        if isinstance(params, Mapping):
            if params or self.count:
                raise ValueError("this statement takes positional parameters (a sequence)")
            return []
        args = list(params)
        if len(args) != self.count:
            raise ValueError(f"the statement has {self.count} placeholders, {len(args)} values were given")
        return args


# --- Protecting what no rule may touch ------------------------------------------------------------------------

_OPAQUE = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|--[^\n]*|/\*.*?\*/", re.S)
_MARK = re.compile(r"\x00(\d+)\x00")


def _protect(sql: str) -> tuple[str, list[str]]:
    """`sql` with each string literal, quoted identifier and comment replaced by a mark `\\0<i>\\0`."""
    kept: list[str] = []

    def keep(match: re.Match[str]) -> str:
        kept.append(match.group(0))
        return f"\x00{len(kept) - 1}\x00"

    return _OPAQUE.sub(keep, sql), kept


def _restore(code: str, kept: list[str]) -> str:
    return _MARK.sub(lambda m: kept[int(m.group(1))], code)


def _literal(code: str, kept: list[str]) -> str | None:
    """The text of a string literal if `code` is (only) the mark of one, else None."""
    match = _MARK.fullmatch(code.strip())
    if match is None:
        return None
    text = kept[int(match.group(1))]
    return text[1:-1].replace("''", "'") if text.startswith("'") else None


def _closing(code: str, opening: int) -> int:
    """The index of the parenthesis closing the one at `opening`."""
    depth = 0
    for i in range(opening, len(code)):
        if code[i] == "(":
            depth += 1
        elif code[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    raise NonPortableStatement("unbalanced parentheses")


def _split_args(inner: str) -> list[str]:
    """The top-level comma-separated arguments of a call's inside."""
    args, depth, start = [], 0, 0
    for i, char in enumerate(inner):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            args.append(inner[start:i])
            start = i + 1
    args.append(inner[start:])
    return args


def _rewrite_calls(code: str, name: str, rewrite: Any) -> str:
    """Replace each call `name(...)` (case-insensitive, not part of a longer name) by `rewrite(args, rest)`,
    which returns (replacement, characters of `rest` consumed) or None to keep the call. Inner calls first."""
    pattern = re.compile(rf"(?<![\w.$]){name}\s*\(", re.I)
    pos = 0
    while True:
        match = pattern.search(code, pos)
        if match is None:
            return code
        opening = match.end() - 1
        closing = _closing(code, opening)
        inner = _rewrite_calls(code[opening + 1 : closing], name, rewrite)
        done = rewrite(_split_args(inner), code[closing + 1 :])
        if done is None:
            replacement, consumed = f"{code[match.start() : opening + 1]}{inner})", 0
        else:
            replacement, consumed = done
        code = code[: match.start()] + replacement + code[closing + 1 + consumed :]
        pos = match.start() + len(replacement)


# --- The rules ---------------------------------------------------------------------------------------------

_REFUSED = [
    (re.compile(r"\bUPDATE\s+OR\s+(IGNORE|REPLACE|ABORT|FAIL|ROLLBACK)\b", re.I),
     "UPDATE OR … (PostgreSQL has no per-statement conflict resolution for UPDATE)"),
    (re.compile(r"\bINSERT\s+OR\s+(REPLACE|ABORT|FAIL|ROLLBACK)\b", re.I),
     "INSERT OR REPLACE/ABORT/FAIL/ROLLBACK (write ON CONFLICT (…) DO UPDATE)"),
    (re.compile(r"(?<!\w)REPLACE\s+INTO\b", re.I), "REPLACE INTO (write ON CONFLICT (…) DO UPDATE)"),
    (re.compile(r"\bPRAGMA\b", re.I), "PRAGMA (SQLite's own; read information_schema instead)"),
    (re.compile(r"\bsqlite_(master|schema|sequence)\b", re.I), "sqlite_master (read information_schema instead)"),
    (re.compile(r"(?<![\w$])_?rowid_?(?![\w$])", re.I), "rowid (PostgreSQL has none: order by a real column)"),
    (re.compile(r"\bGLOB\b", re.I), "GLOB (use LIKE or a regular expression)"),
    (re.compile(r"\bjulianday\s*\(", re.I), "julianday()"),
    (re.compile(r"\bgroup_concat\s*\(", re.I), "group_concat() (string_agg on PostgreSQL)"),
    (re.compile(r"\brandomblob\s*\(", re.I), "randomblob()"),
    (re.compile(r"\blast_insert_rowid\s*\(", re.I), "last_insert_rowid() (use RETURNING)"),
    (re.compile(r"(?<![\w.])changes\s*\(\s*\)", re.I), "changes() (use the statement's row count)"),
]  # fmt: skip

_INSERT_OR_IGNORE = re.compile(r"\bINSERT\s+OR\s+IGNORE\s+INTO\b", re.I)
_RETURNING = re.compile(r"\bRETURNING\b", re.I)
_ON_CONFLICT = re.compile(r"\bON\s+CONFLICT\b", re.I)
_IS_VALUE = re.compile(r"\bIS(\s+NOT)?\s+(?!(?:NULL|TRUE|FALSE|UNKNOWN|DISTINCT|NOT)\b)(?=[\w?:(])", re.I)
_FROM_SUBQUERY = re.compile(r"\b(FROM|JOIN)\s*\((?=\s*(?:SELECT|WITH|VALUES)\b)", re.I)
_ALIAS = re.compile(r"\s*(?:AS\s+)?([A-Za-z_]\w*)", re.I)
_NOT_ALIASES = frozenset(
    "where join left right inner outer cross full on using order group limit offset union except intersect"
    " returning window having natural set values".split()
)
_BARE_CONDITION = re.compile(r"\bWHEN(\s+)(\?|:[A-Za-z_]\w*)(\s+)THEN\b", re.I)
_JSON_INDEX = re.compile(r"\$\[(\d+)\]")
_PLACEHOLDER = re.compile(r"(\?)(?!\d)|(?<![:\w]):([A-Za-z_]\w*)")


def _insert_or_ignore(code: str) -> str:
    if not _INSERT_OR_IGNORE.search(code):
        return code
    code = _INSERT_OR_IGNORE.sub("INSERT INTO", code, count=1)
    if _ON_CONFLICT.search(code):
        return code
    returning = _RETURNING.search(code)
    if returning is None:
        return f"{code.rstrip().rstrip(';')} ON CONFLICT DO NOTHING"
    return f"{code[: returning.start()].rstrip()} ON CONFLICT DO NOTHING {code[returning.start() :]}"


def _scalar(function: str) -> Any:
    def rewrite(args: list[str], rest: str) -> tuple[str, int] | None:
        if len(args) < 2:
            return None  # the aggregate
        return f"{function}({','.join(args)})", 0

    return rewrite


def _ifnull(args: list[str], rest: str) -> tuple[str, int]:
    return f"COALESCE({','.join(args)})", 0


def _json_each(args: list[str], rest: str) -> tuple[str, int]:
    if len(args) != 1:
        raise NonPortableStatement("json_each() with a path argument")
    alias, consumed = "json_each", 0
    match = _ALIAS.match(rest)
    if match is not None and match.group(1).lower() not in _NOT_ALIASES:
        alias, consumed = match.group(1), match.end()
    value = args[0].strip()
    return f"jsonb_array_elements(CAST({value} AS jsonb)) WITH ORDINALITY AS {alias}(value, key)", consumed


def _rules(code: str, kept: list[str]) -> str:
    for pattern, why in _REFUSED:
        if pattern.search(code):
            raise NonPortableStatement(why)

    def json_extract(args: list[str], rest: str) -> tuple[str, int]:
        path = _literal(args[1], kept) if len(args) == 2 else None
        index = _JSON_INDEX.fullmatch(path) if path is not None else None
        if index is None:
            raise NonPortableStatement("json_extract() with a path other than '$[n]'")
        return f"({args[0].strip()} ->> {index.group(1)})", 0

    def strftime(args: list[str], rest: str) -> tuple[str, int]:
        texts = [_literal(arg, kept) for arg in args]
        if texts == ["%s", "now"]:
            return "CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)", 0
        raise NonPortableStatement("strftime() other than strftime('%s', 'now')")

    code = _insert_or_ignore(code)
    code = _rewrite_calls(code, "MAX", _scalar("GREATEST"))
    code = _rewrite_calls(code, "MIN", _scalar("LEAST"))
    code = _rewrite_calls(code, "IFNULL", _ifnull)
    code = _rewrite_calls(code, "json_each", _json_each)
    code = _rewrite_calls(code, "json_extract", json_extract)
    code = _rewrite_calls(code, "strftime", strftime)
    code = _BARE_CONDITION.sub(r"WHEN\1\2 <> 0\3THEN", code)
    code = _IS_VALUE.sub(lambda m: "IS DISTINCT FROM " if m.group(1) else "IS NOT DISTINCT FROM ", code)
    return _alias_subqueries(code)


def _alias_subqueries(code: str) -> str:
    """Give each subquery in FROM / JOIN without an alias one (`_sub1`, …): PostgreSQL before 16 requires it."""
    pos, number = 0, 0
    while True:
        match = _FROM_SUBQUERY.search(code, pos)
        if match is None:
            return code
        closing = _closing(code, match.end() - 1)
        alias = _ALIAS.match(code, closing + 1)
        if alias is None or alias.group(1).lower() in _NOT_ALIASES:
            number += 1
            code = f"{code[: closing + 1]} AS _sub{number}{code[closing + 1 :]}"
        pos = match.end()


def _placeholders(code: str) -> tuple[str, tuple[str, ...] | None, int]:
    positional = 0
    order: dict[str, int] = {}

    def number(match: re.Match[str]) -> str:
        nonlocal positional
        if match.group(1):
            if order:
                raise NonPortableStatement("a statement mixes ? and :name placeholders")
            positional += 1
            return f"${positional}"
        if positional:
            raise NonPortableStatement("a statement mixes ? and :name placeholders")
        name = match.group(2)
        if name not in order:
            order[name] = len(order) + 1
        return f"${order[name]}"

    code = _PLACEHOLDER.sub(number, code)
    if order:
        return code, tuple(order), len(order)
    return code, None, positional


@lru_cache(maxsize=4096)
def translate(sql: str) -> Translation:
    """`sql` (SQLite, as the repositories write it) for PostgreSQL; raises NonPortableStatement. Cached."""
    code, kept = _protect(sql)
    code = _rules(code, kept)
    code, names, count = _placeholders(code)
    return Translation(_restore(code, kept), names, count)


def bind(sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> tuple[str, list[Any]]:
    """The PostgreSQL text of `sql` and its parameters in `$n` order, for asyncpg's `fetch(sql, *args)`."""
    translation = translate(sql)
    return translation.sql, translation.args(params)
