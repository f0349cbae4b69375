"""The `vipbot` command: `vipbot run` starts every configured channel, `vipbot console` a terminal chat,
`vipbot import members FILE [--confirm]` brings customers in from a spreadsheet (a dry run unless confirmed)
`vipbot import template FILE` writes the spreadsheet to fill in, `vipbot backup FILE` / `vipbot restore FILE`
copy the database out (while the bot runs) and back (with it stopped), `vipbot doctor` checks the set-up and
`vipbot wechat menu` pushes the WeChat menu."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import logging.handlers
import signal
import sys
import time
from pathlib import Path

from bot.app.config import ConfigError, Settings, load_settings
from bot.app.runtime import Runtime
from bot.app.web import CannotListen, WebServer
from bot.console.channel import ConsoleChannel
from bot.wechat import menu as wechat_menu
from handlers.core.i18n import Catalog
from handlers.customers import importing
from handlers.customers.spreadsheet import UnreadableFile
from storage.db import backup as db_backup
from storage.db import instance
from storage.db.open import hold_instance, open_database
from storage.db.preflight import StorageError

log = logging.getLogger("vipbot")


def _setup_logging(settings: Settings, quiet: bool) -> None:
    level = logging.WARNING if quiet else getattr(logging, settings.log_level)
    handler: logging.Handler = logging.StreamHandler(sys.stderr)
    if settings.log_file and not quiet:  # the bot's own log; the tools (quiet) keep writing to the terminal
        Path(settings.log_file).parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.WatchedFileHandler(settings.log_file, encoding="utf-8")  # reopened after logrotate
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", handlers=[handler])
    # httpx logs every request at INFO, which would include the bot token in the URL.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("urllib3").setLevel(logging.WARNING)  # wechatpy's URLs carry the access token
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


async def run_console(settings: Settings) -> None:
    """The terminal chat, as the one bot process on its database (see `storage.db.open.hold_instance`)."""
    async with hold_instance(settings.storage):  # before anything (start-up recovery) touches the database
        await _console(settings)


async def _console(settings: Settings) -> None:
    runtime = await Runtime.open(settings)
    try:
        exports = Path(settings.storage.sqlite_path).parent / "exports"
        console = ConsoleChannel(runtime.dispatcher, settings.console.user, settings.staff.console, exports=exports)
        await console.attach(runtime)
        await runtime.start()
        if not runtime.leader.leading:  # its pushes would wait for a leader that has no console to print them
            raise StorageError(
                f"another vipbot ({await runtime.leader.holder() or 'unknown'}) runs on {settings.storage.where};"
                " the console chat needs a database of its own (or stop the workers first)"
            )
        await console.run(interactive=sys.stdin.isatty(), settle=lambda: runtime.outbox.idle(timeout=2.0))
        await runtime.outbox.idle()  # let queued pushes print before leaving
    finally:
        await runtime.close()


class LostLead(Exception):
    """This process led and lost the connection that held the lead: it stopped (exit code 1, so that its
    supervisor starts it again, as a follower while another process leads)."""


class PollingTakesOne(StorageError):
    """Telegram polling on a database another process leads (exit code 2)."""


async def run_bot(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Run every configured channel until SIGINT or SIGTERM (or until `stop` is set, when given: then no
    signal handler is installed). On SQLite it refuses to start (`AlreadyRunning`, exit code 2) while another
    bot process runs on the same file; on PostgreSQL any number run, one leading (`bot.app.leader`), except with
    Telegram polling (`PollingTakesOne`). Raises `LostLead` when it stopped because it lost the lead."""
    async with hold_instance(settings.storage):  # before anything (start-up recovery) touches the database
        await _run_bot(settings, stop)


async def _run_bot(settings: Settings, stop: asyncio.Event | None) -> None:
    telegram_on = bool(settings.telegram_token)
    wechat_on = settings.wechat.enabled
    if not telegram_on and not wechat_on:
        print(
            "No channel has credentials (set TELEGRAM_BOT_TOKEN, or wechat.app_id and WECHAT_TOKEN).\n"
            "Opening the console chat instead, on the database at " + settings.storage.where + ".",
            file=sys.stderr,
        )
        await _console(settings)
        return
    # Imported only when a channel is configured, so the console starts fast.
    from bot.app.health import HealthHandler, MetricsHandler
    from bot.app.metrics import access_networks
    from bot.telegram.channel import TelegramChannel
    from bot.wechat.channel import WeChatChannel

    runtime = await Runtime.open(settings)
    http = settings.http
    serving = bool(settings.telegram.webhook.url) or wechat_on or http.monitoring
    web = WebServer(http.host, http.port, http.max_body_bytes) if serving else None
    telegram = TelegramChannel(settings, runtime.dispatcher) if telegram_on else None
    wechat = WeChatChannel(settings, runtime.dispatcher) if wechat_on else None
    running: dict[str, str] = {}
    if stop is None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stop.set)
    try:
        if telegram is not None:
            await telegram.attach(runtime)
            await telegram.start(web)
            runtime.metrics.watch_telegram(telegram)
            running["telegram"] = telegram.mode
            if settings.telegram.webhook.secret_generated:
                log.info("telegram: no webhook secret_token configured; one derived from the bot token (the same in "
                         "every worker) is registered with setWebhook (posts without it get 403)")  # fmt: skip
        if wechat is not None:
            assert web is not None
            await wechat.attach(runtime, web)
            runtime.metrics.watch("wechat")
            running["wechat"] = "webhook"
        await runtime.start()
        leader = runtime.leader
        if telegram is not None and telegram.mode == "polling" and not leader.leading:
            raise PollingTakesOne(
                f"another vipbot ({await leader.holder() or 'unknown'}) leads on {settings.storage.where} and polls"
                " Telegram; only one process can poll: set telegram.webhook.url to run several workers"
            )
        if leader.shared:
            log.info("storage: PostgreSQL at %s; this process (%s) %s", settings.storage.where, leader.name,
                     "leads" if leader.leading else f"follows {await leader.holder() or 'the leader'}")  # fmt: skip
        if web is not None:  # last, so that /healthz is green from its first answer
            networks = access_networks(http.metrics_from)
            web.mount("/healthz", HealthHandler, runtime=runtime, channels=lambda: dict(running), networks=networks)
            web.mount("/metrics", MetricsHandler, metrics=runtime.metrics, networks=networks)
            await web.start()
        log.info("vipbot is running (%s); Ctrl-C stops it", ", ".join(f"{k}: {v}" for k, v in running.items()))
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(runtime.lost.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiting in waits:
                waiting.cancel()
        if runtime.lost.is_set():
            raise LostLead("lost the lead (see the log); stopped so that another process leads")
    finally:
        # Stop taking updates first, finish what is in hand, and close the database last.
        if web is not None:
            await web.stop()
        if telegram is not None:
            await telegram.stop()
        if wechat is not None:
            await wechat.stop()
        await runtime.close()


async def run_import(settings: Settings, path: Path, *, confirm: bool) -> list[str]:
    """The dry run (or, confirmed, the import) of the file on the configured database: the summary lines.
    Raises UnreadableFile."""
    storage = settings.storage
    limit = storage.loop_statement_limit(debug=settings.log_level == "DEBUG")
    db = await open_database(storage, readers=1, writers=1, loop_statement_ms=limit)
    try:
        outcome = await importing.import_file(db, path, settings.rules, apply=confirm, now=int(time.time()))
    finally:
        await db.close()
    return importing.summary_lines(Catalog(settings.locale, settings.messages), outcome, applied=confirm)


def import_command(args: argparse.Namespace, settings: Settings) -> int:
    """`vipbot import members FILE [--confirm]` and `vipbot import template FILE`: 0 when done, 2 when the file
    cannot be read (or written)."""
    texts = Catalog(settings.locale, settings.messages)
    path = Path(args.file)
    if args.what == "template":
        try:
            importing.write_template(path)
        except UnreadableFile:
            print(f"vipbot: {texts.t('import_cmd.template_kind', file=path)}", file=sys.stderr)
            return 2
        except OSError as exc:
            print(f"vipbot: {texts.t('import_cmd.unreadable', file=path, reason=exc.strerror or exc)}", file=sys.stderr)
            return 2
        print(texts.t("import_cmd.template_written", file=path))
        return 0
    try:
        if not path.is_file():  # before the database is opened (and made, if it is new)
            raise UnreadableFile(texts.t("import_cmd.no_file"))
        lines = asyncio.run(run_import(settings, path, confirm=args.confirm))
    except UnreadableFile as exc:
        print(f"vipbot: {texts.t('import_cmd.unreadable', file=path, reason=exc)}", file=sys.stderr)
        return 2
    print("\n".join(lines))
    return 0


def backup_command(args: argparse.Namespace, settings: Settings) -> int:
    """`vipbot backup FILE` and `vipbot restore FILE` (SQLite only: exit code 2 on PostgreSQL); StorageError (exit
    code 2) when either side is unusable."""
    if settings.storage.engine == "postgresql":
        print(f"vipbot: backup and restore copy the SQLite file; on PostgreSQL ({settings.storage.where}) use pg_dump"
              " / pg_restore", file=sys.stderr)  # fmt: skip
        return 2
    database, other = Path(settings.storage.sqlite_path), Path(args.file)
    if args.command == "backup":
        pages = db_backup.backup(database, other)
        print(f"Backed up {database} to {other} ({pages} pages).")
        return 0
    with instance.hold(settings.storage.sqlite_path):  # never under a running bot: it would go on with the old file
        kept = db_backup.restore(other, database)
    print(f"Restored {database} from {other}." + (f" The previous database is kept as {kept}." if kept else ""))
    return 0


def doctor_command(args: argparse.Namespace) -> int:
    """`vipbot doctor`: every check, one line each with the fix; 1 when any fails. A configuration that does not
    load is one of its failures (not the usual `vipbot: ...` exit)."""
    from bot.app import doctor

    settings, loaded = doctor.load(args.config)
    if settings is not None:
        _setup_logging(settings, quiet=True)
    try:
        return asyncio.run(doctor.diagnose(settings, loaded, sys.stdout))
    except KeyboardInterrupt:
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vipbot", description="VIP community bot for Telegram and WeChat")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, text in (("run", "start every configured channel"), ("console", "chat with the bot in this terminal")):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--config", help="configuration file (default: ./config.yaml)")
    imports = sub.add_parser("import", help="bring customers in from a spreadsheet").add_subparsers(
        dest="what", required=True
    )
    members = imports.add_parser("members", help="import members from an .xlsx or .csv file (a dry run first)")
    members.add_argument("file", help="the .xlsx or .csv file")
    members.add_argument("--confirm", action="store_true", help="apply the import (without it: a dry run)")
    template = imports.add_parser("template", help="write a template to fill in (.xlsx or .csv)")
    template.add_argument("file", help="where to write it: FILE.xlsx or FILE.csv")
    saving = sub.add_parser("backup", help="copy the database to FILE, consistently, while the bot runs")
    saving.add_argument("file", help="where to write the copy")
    restoring = sub.add_parser("restore", help="put a backup in place of the database (stop the bot first)")
    restoring.add_argument("file", help="the backup to restore")
    checking = sub.add_parser("doctor", help="check the configuration and every channel, each with the fix")
    wechat_menu.add_parser(sub)
    for cmd in (members, template, saving, restoring, checking):
        cmd.add_argument("--config", help="configuration file (default: ./config.yaml)")
    args = parser.parse_args(argv)
    if args.command == "doctor":
        return doctor_command(args)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"vipbot: {exc}", file=sys.stderr)
        return 2
    quiet = args.command in ("console", "import", "backup", "restore", "wechat") or not settings.telegram_token
    _setup_logging(settings, quiet=quiet)
    try:
        if args.command == "import":
            return import_command(args, settings)
        if args.command in ("backup", "restore"):
            return backup_command(args, settings)
        if args.command == "wechat":
            return wechat_menu.menu_command(args, settings)
        asyncio.run(run_console(settings) if args.command == "console" else run_bot(settings))
    except KeyboardInterrupt:
        pass
    except (LostLead, CannotListen) as exc:  # exit code 1: a supervisor tries again (the port may be free then)
        print(f"vipbot: {exc}", file=sys.stderr)
        return 1
    except StorageError as exc:  # the database cannot be used: one line, what to do, no traceback
        print(f"vipbot: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
