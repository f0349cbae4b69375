"""`vipbot doctor`: checks the configuration and everything the bot needs to go live, and prints one line per
check, with the fix when it is not right. The exit code is 1 when any check fails (warnings leave it 0).

The checks, in order: the configuration loads; the database can be written (`storage.path`, or on PostgreSQL
`storage.url`: it connects, reads the schema version and tries a write that is rolled back); a font that draws
Chinese is there for the charts; Telegram (`bot.telegram.doctor`) when a token is set; WeChat
(`bot.wechat.doctor`) when the account is configured. Nothing is changed: the database gets a write transaction
that is rolled back (on PostgreSQL it creates a table and writes a row in it), so no table is left behind.
"""

from __future__ import annotations

import asyncio
import sqlite3
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

from bot.app.checks import Finding, Outcome
from bot.app.config import DEFAULT_CONFIG, ConfigError, Settings, load_settings
from storage.db.database import migration_scripts
from storage.db.preflight import StorageError, check_contents, check_path, describe_error

MARKS = {Outcome.OK: "✔", Outcome.WARN: "!", Outcome.FAIL: "✘"}
PLAIN_MARKS = {Outcome.OK: "ok", Outcome.WARN: "!!", Outcome.FAIL: "XX"}
"""For a terminal that cannot show ✔ and ✘ (a non-UTF-8 locale)."""
LOCK_WAIT_SECONDS = 2.0
"""How long the database check waits for the write lock (the running bot holds it for milliseconds)."""
PG_CONNECT_SECONDS = 5.0
"""How long the PostgreSQL check waits to connect (and each of its statements to finish)."""
PG_PROBE = "vipbot_doctor_probe"
"""The table the PostgreSQL check creates and writes in a transaction it rolls back (it never stays)."""
FONT_FIX = (
    "reinstall vipbot's dependencies (pip install -e . brings the mplfonts font), or install a CJK font"
    " system-wide (apt install fonts-noto-cjk) and delete ~/.cache/matplotlib so matplotlib sees it"
)

Emit = Callable[[Finding], None]


# --- the configuration ---------------------------------------------------------------------------------
def load(config: str | None) -> tuple[Settings | None, Finding]:
    """The settings (None when they cannot be used) and the finding that says so."""
    file = Path(config) if config else DEFAULT_CONFIG
    fix = f"correct it in {file} (or in the VIPBOT_... variable that sets it)"
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        if config and not file.exists():
            fix = "check the path given to --config (without it: ./config.yaml and the environment)"
        return None, Finding.fail("configuration", str(exc), fix)
    except (OSError, ValueError) as exc:  # unreadable, or not UTF-8
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        return None, Finding.fail("configuration", f"cannot read {file}: {reason}", "make it a readable UTF-8 file")
    if file.exists():
        detail = f"{file} loads ({settings.locale}, {settings.timezone})"
    else:
        detail = f"no {file}: defaults and environment variables ({settings.locale}, {settings.timezone})"
    return settings, Finding.ok("configuration", detail)


# --- the database --------------------------------------------------------------------------------------
def check_database(settings: Settings) -> Finding:
    """Can the bot write its database? A missing file is fine when its folder can be made and written (the bot
    creates it at first start); an existing one must be vipbot's, not newer than this version, and take a write
    transaction (BEGIN IMMEDIATE, rolled back)."""
    name = "database"
    path = Path(settings.storage.sqlite_path)
    where = path.absolute()
    folder = where.parent
    if path.is_dir():
        return Finding.fail(name, f"storage.path {where} is a folder",
                            f"set storage.path to a file in it, e.g. {where / 'vipbot.db'}")  # fmt: skip
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return Finding.fail(name, f"the folder {folder} cannot be created: {existing} is a file, not a folder",
                            "move that file away, or set storage.path to another folder")  # fmt: skip
    problem = _unwritable(existing)
    if problem:
        return Finding.fail(name, f"the folder {existing} is not writable ({problem})",
                            "make it writable for the user that runs the bot (SQLite keeps its -wal and -shm files "
                            "beside the database), or set storage.path to another folder")  # fmt: skip
    if existing != folder:
        return Finding.ok(name, f"{where} and its folder do not exist yet: the bot creates them at first start")
    if not path.exists():
        return Finding.ok(name, f"{where} does not exist yet: the bot creates it at first start (the folder is "
                                "writable)")  # fmt: skip
    try:
        check_path(str(path))  # permissions and SQLite's header
    except StorageError as exc:
        return _storage_failure(name, exc)
    return _check_contents(name, path, where)


def _storage_failure(name: str, exc: StorageError) -> Finding:
    """A StorageError's line ("what is wrong: what to do" or "...; what to do") as the finding and its fix."""
    text = str(exc)
    what, sep, fix = text.rpartition("; ")
    if not sep:
        what, sep, fix = text.rpartition(": ")
    return Finding.fail(name, what, fix) if sep else Finding.fail(name, text, "")


def _unwritable(folder: Path) -> str:
    """Why a file cannot be made in `folder` (empty: it can). Tried for real: root ignores permission bits."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".vipbot-doctor-"):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return ""


def _check_contents(name: str, path: Path, where: Path) -> Finding:
    newest = migration_scripts()[-1][0]
    try:
        conn = sqlite3.connect(f"file:{quote(str(where))}?mode=rw", uri=True, isolation_level=None,
                               timeout=LOCK_WAIT_SECONDS)  # fmt: skip
    except sqlite3.Error as exc:
        return _storage_failure(name, describe_error(str(path), exc))
    try:
        check_contents(conn, str(path), newest)  # ours, and not from a newer vipbot
        tables = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'")
        version = 0
        if tables.fetchone() is not None:
            row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
            version = int(row[0]) if row is not None and row[0] is not None else 0
        conn.execute("BEGIN IMMEDIATE")  # takes the write lock, as every transaction of the bot does
        conn.execute("ROLLBACK")
    except StorageError as exc:
        return _storage_failure(name, exc)
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            return Finding.warn(name, f"{where}: the write lock stayed taken for {LOCK_WAIT_SECONDS:g} s",
                                "another program holds it (a long import?): run the doctor again")  # fmt: skip
        return _storage_failure(name, describe_error(str(path), exc))
    except sqlite3.Error as exc:
        return _storage_failure(name, describe_error(str(path), exc))
    finally:
        conn.close()
    if version == 0:
        state = "empty: the bot creates its tables at first start"
    elif version < newest:
        state = (f"schema version {version}; the bot applies the {newest - version} newer migration(s) at its next "
                 "start (take a backup first: vipbot backup FILE)")  # fmt: skip
    else:
        state = f"schema version {version}, up to date"
    return Finding.ok(name, f"{where} is writable; {state}")


async def check_postgres(settings: Settings) -> Finding:
    """Can the bot use its PostgreSQL database? It connects, reads the schema version (refusing one from a newer
    vipbot) and, in a transaction it rolls back, creates a table and writes a row, as the migrations and every
    transaction do."""
    name = "database"
    url, where = settings.storage.url, settings.storage.where
    try:
        import asyncpg

        from storage.db.postgres import migration_scripts as postgres_scripts
    except ImportError as exc:
        return Finding.fail(name, f"storage.url names PostgreSQL but asyncpg cannot be loaded: {exc}",
                            "pip install 'vipbot[postgres]'")  # fmt: skip
    newest = postgres_scripts()[-1][0]
    limits = {"application_name": "vipbot doctor", "statement_timeout": str(int(PG_CONNECT_SECONDS * 1000)),
              "lock_timeout": str(int(LOCK_WAIT_SECONDS * 1000))}  # fmt: skip
    try:
        conn = await asyncpg.connect(url, timeout=PG_CONNECT_SECONDS, server_settings=limits)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        reason = str(exc).replace(url, where) or type(exc).__name__
        return Finding.fail(name, f"cannot connect to the PostgreSQL database {where}: {reason}",
                            "start PostgreSQL, or correct storage.url (host, port, user, password, name)")  # fmt: skip
    try:
        version = 0
        if await conn.fetchval("SELECT to_regclass('schema_version') IS NOT NULL"):
            version = int(await conn.fetchval("SELECT COALESCE(MAX(version), 0) FROM schema_version"))
        if version > newest:
            return Finding.fail(name, f"{where} was migrated by a newer vipbot (schema version {version}; this one"
                                      f" knows up to {newest})",
                                "run that version, or restore a backup (pg_restore) made for this one")  # fmt: skip
        probe = conn.transaction()
        await probe.start()
        try:
            await conn.execute(f"CREATE TABLE {PG_PROBE} (x INTEGER)")
            await conn.execute(f"INSERT INTO {PG_PROBE} VALUES (1)")
        finally:
            await probe.rollback()
    except asyncpg.ReadOnlySQLTransactionError:
        return Finding.fail(name, f"{where} is read-only (a standby, or default_transaction_read_only)",
                            "point storage.url at the primary server")  # fmt: skip
    except asyncpg.InsufficientPrivilegeError as exc:
        return Finding.fail(name, f"{where}: the user may not create tables or write ({exc})",
                            "make the user own the database, or GRANT CREATE ON SCHEMA public TO it")  # fmt: skip
    except (asyncpg.QueryCanceledError, asyncpg.LockNotAvailableError):
        return Finding.warn(name, f"{where}: a statement waited over {PG_CONNECT_SECONDS:g} s",
                            "the server is busy or a long transaction holds a lock: run the doctor again")  # fmt: skip
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        return Finding.fail(name, f"{where}: {exc}", "check the server's log")
    finally:
        await conn.close()
    if version == 0:
        state = "empty: the bot creates its tables at first start"
    elif version < newest:
        state = (f"schema version {version}; the bot applies the {newest - version} newer migration(s) at its next "
                 "start (take a backup first: pg_dump)")  # fmt: skip
    else:
        state = f"schema version {version}, up to date"
    return Finding.ok(name, f"PostgreSQL {where} is writable; {state}")


# --- the charts' font ----------------------------------------------------------------------------------
def check_font() -> Finding:
    from handlers.shared import charts  # matplotlib's font list: about a second

    try:
        found = charts.cjk_font()
    except Exception as exc:
        return Finding.fail("chart font", f"the fonts cannot be listed: {exc}", FONT_FIX)
    if found is None:
        return Finding.fail("chart font", "no font that draws Chinese: chart labels would show as #1, #2",
                            FONT_FIX)  # fmt: skip
    return Finding.ok("chart font", f"{found} (Chinese labels in charts render)")


# --- the channels --------------------------------------------------------------------------------------
async def _telegram(settings: Settings) -> list[Finding]:
    if not settings.telegram_token:
        return [Finding.ok("telegram", "not configured (no TELEGRAM_BOT_TOKEN): skipped")]
    from bot.telegram import doctor as telegram_doctor  # python-telegram-bot only when it is needed

    return await telegram_doctor.checks(settings)


async def _wechat(settings: Settings) -> list[Finding]:
    if not settings.wechat.enabled:
        return [Finding.ok("wechat", "not configured (no wechat.app_id and WECHAT_TOKEN): skipped")]
    try:
        from bot.wechat import doctor as wechat_doctor
    except ImportError as exc:
        return [Finding.fail("wechat", f"the WeChat checks cannot be loaded: {exc}", "reinstall vipbot")]
    return list(await wechat_doctor.checks(settings))


async def _guarded(name: str, token: str, check: Callable[[], Awaitable[list[Finding]]]) -> list[Finding]:
    """A check that raised is a failed finding, not a traceback."""
    try:
        return await check()
    except Exception as exc:
        text = f"{type(exc).__name__}: {exc}"
        if token:
            text = text.replace(token, "<token>")
        return [Finding.fail(name, f"the check itself failed: {text}", "report this as a bug, with this line")]


async def run(settings: Settings, emit: Emit | None = None) -> list[Finding]:
    """Every check after the configuration's, in order; `emit` gets each finding as soon as it is known."""
    token = settings.telegram_token
    sections: list[tuple[str, Callable[[], Awaitable[list[Finding]]]]] = [
        ("database", lambda: _database(settings)),
        ("chart font", lambda: asyncio.to_thread(lambda: [check_font()])),
        ("telegram", lambda: _telegram(settings)),
        ("wechat", lambda: _wechat(settings)),
    ]
    if not token and not settings.wechat.enabled:  # one line for both channels
        sections[2:] = [("channels", _no_channel)]
    findings: list[Finding] = []
    for name, check in sections:
        for finding in await _guarded(name, token, check):
            findings.append(finding)
            if emit is not None:
                emit(finding)
    return findings


async def _database(settings: Settings) -> list[Finding]:
    if settings.storage.engine == "postgresql":
        return [await check_postgres(settings)]
    return await asyncio.to_thread(lambda: [check_database(settings)])


async def _no_channel() -> list[Finding]:
    return [Finding.warn("channels", "no channel has credentials: `vipbot run` opens the console chat instead",
                         "set TELEGRAM_BOT_TOKEN (BotFather), and/or wechat.app_id with WECHAT_TOKEN")]  # fmt: skip


# --- output --------------------------------------------------------------------------------------------
def line(finding: Finding, marks: dict[Outcome, str] = MARKS, arrow: str = "→") -> str:
    """`✔ name  detail`, and ` → fix` when it is not OK; a detail of several lines is indented."""
    first, *rest = finding.detail.splitlines() or [""]
    text = f"{marks[finding.outcome]} {finding.name}  {first}"
    if rest:
        text += "".join(f"\n    {part.strip()}" for part in rest)
    if finding.outcome is not Outcome.OK and finding.fix:
        text += f"\n    {arrow} {finding.fix}" if rest else f" {arrow} {finding.fix}"
    return text


def summary(findings: list[Finding]) -> str:
    failed = sum(f.outcome is Outcome.FAIL for f in findings)
    warned = sum(f.outcome is Outcome.WARN for f in findings)
    if not failed and not warned:
        return f"All {len(findings)} checks passed."
    parts = [f"{failed} failed"] if failed else []
    if warned:
        parts.append(f"{warned} warning{'s' if warned > 1 else ''}")
    return f"{', '.join(parts)} (of {len(findings)} check{'s' if len(findings) > 1 else ''})."


def exit_code(findings: list[Finding]) -> int:
    return 1 if any(f.outcome is Outcome.FAIL for f in findings) else 0


class _Printer:
    """Writes lines to `out`, with plain marks and replaced characters where its encoding cannot show them."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.encoding = getattr(out, "encoding", None) or "utf-8"
        try:
            "✔✘→“”签到".encode(self.encoding)
            self.unicode = True
        except (UnicodeEncodeError, LookupError):
            self.unicode = False

    def __call__(self, finding: Finding) -> None:
        if self.unicode:
            self.write(line(finding))
        else:
            self.write(line(finding, PLAIN_MARKS, "->"))

    def write(self, text: str) -> None:
        if not self.unicode:
            try:
                text = text.encode(self.encoding, "replace").decode(self.encoding)
            except LookupError:
                text = text.encode("ascii", "replace").decode("ascii")
        print(text, file=self.out, flush=True)


async def diagnose(settings: Settings | None, loaded: Finding, out: TextIO) -> int:
    """Print every finding as it comes, then the summary; the exit code."""
    printer = _Printer(out)
    printer(loaded)
    findings = [loaded]
    if settings is not None:
        findings += await run(settings, printer)
    printer.write(summary(findings))
    return exit_code(findings)

