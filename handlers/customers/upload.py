"""Importing from a chat: a staff member sends the import file to the bot (privately, or in the staff chat) and
gets the dry run, the same summary as `vipbot import members`, with a Confirm button; `/import confirm` (or
typing 确认 / confirm) imports it.

The file waits in the database between the two steps (`customer_uploads`), one per staff member: it survives a
restart, expires after `UPLOAD_MINUTES`, a second file replaces the first (and the first one's button stops
working), and only the staff member who sent it can confirm it. Confirming removes it in the importing
transaction, so confirming twice imports once.

Reading and planning grow with the file, so both steps do them in their `prepare` step (a worker thread and a
read snapshot, before the update's transaction); the confirmation plans again inside it (`importing.confirm`).
The channel fetches the file's bytes before handling (`ChannelPort.fetch_document`), for staff only.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from handlers.core.command import Preparing, Refusal
from handlers.core.deps import Deps, Request
from handlers.core.messages import Button, Reply
from handlers.core.parsing import parse_id
from handlers.customers import importing
from handlers.customers.memory import drain
from handlers.customers.rows import ParsedRows
from handlers.customers.spreadsheet import UnreadableFile

FILE_COMMAND = "import_file"
"""The hidden command a file sent to the bot stands for (the channels route files to it)."""
IMPORT_SUFFIXES = frozenset({".xlsx", ".xlsm", ".csv", ".txt"})
DOCUMENT_LIMIT_MB = 10
UPLOAD_MINUTES = 30
"""How long a file waits for its confirmation."""
_CONFIRM_WORDS = ("confirm", "确认")


@dataclass(frozen=True, slots=True)
class Checked:
    """A file read and dry-run, ready to wait for its confirmation."""

    name: str
    content: bytes
    outcome: importing.Outcome


@dataclass(frozen=True, slots=True)
class Imported:
    """What confirming the waiting file did: the import ran in the `prepare` step, outside the update's
    transaction, in short chunks of its own (handlers.customers.importing.confirm), so no other write waits
    for the whole file."""

    outcome: importing.Outcome


async def _parse(deps: Deps, content: bytes, name: str) -> ParsedRows:
    try:
        return await asyncio.to_thread(importing.parse_content, content, name, deps.rules)
    except UnreadableFile as exc:
        raise Refusal(Reply(deps.texts.t("import_cmd.unreadable", file=name, reason=str(exc)))) from exc


async def prepare_file(prep: Preparing, deps: Deps) -> Checked:
    """The sent file read and dry-run on a snapshot; `Refusal` says why it cannot be."""
    texts, document = deps.texts, prep.msg.document
    if document is None:
        raise Refusal(Reply(texts.t("upload.no_file")))
    if Path(document.name).suffix.lower() not in IMPORT_SUFFIXES:
        raise Refusal(Reply(texts.t("upload.not_spreadsheet", file=document.name)))
    if document.content is None:
        if document.size > DOCUMENT_LIMIT_MB * 1024 * 1024:
            raise Refusal(Reply(texts.t("upload.too_large", file=document.name, mb=DOCUMENT_LIMIT_MB)))
        raise Refusal(Reply(texts.t("upload.unavailable", file=document.name)))
    parsed = await _parse(deps, document.content, document.name)
    plan = await importing.dry_run(deps.db, parsed)
    outcome = plan.outcome()
    await asyncio.to_thread(drain, plan.new, plan.updated, parsed.rows)
    return Checked(document.name, document.content, outcome)


async def receive_file(req: Request, deps: Deps, prepared: Checked) -> list[Reply]:
    """The dry run's summary; a file that would change something waits for its confirmation (replacing this
    staff member's earlier one)."""
    texts, outcome = deps.texts, prepared.outcome
    lines = importing.summary_lines(texts, outcome, applied=False, hint="upload.confirm_hint")
    if not (outcome.new or outcome.updated):
        return [Reply("\n".join(lines), secret=True)]
    now = deps.now_ts()
    sender = req.msg.sender
    async with deps.db.transaction() as repos:
        upload_id = await repos.customers.save_upload(sender.channel, sender.external_id, prepared.name,
                                                      prepared.content, now, now + UPLOAD_MINUTES * 60)  # fmt: skip
    button = Button(texts.t("upload.confirm_button"), f"v1:import:confirm {upload_id}")
    # Names, phones and points of customers: never where other members read.
    return [Reply("\n".join(lines), buttons=(button,), secret=True)]


def _confirm_args(args: str) -> tuple[bool, int | None]:
    """('confirm [id]' or '' as typed after the keyword) -> (is a confirmation, the file's id if named)."""
    words = args.split()
    if words and words[0].lower() in _CONFIRM_WORDS:
        words = words[1:]
    if len(words) > 1:
        return False, None
    if not words:
        return True, None
    found = parse_id(words[0])
    return found is not None, found


async def prepare_confirm(prep: Preparing, deps: Deps) -> Imported:
    """The sender's waiting file, read again (off the loop), claimed and imported; or why there is nothing to
    confirm. The claim commits first, so a second confirmation (or a re-delivery) imports nothing; an import cut
    short by a crash is completed by sending the file again (its rows are matched by phone, nothing is booked
    twice)."""
    texts = deps.texts
    wanted, upload_id = _confirm_args(prep.args)
    if not wanted:
        raise Refusal(*deps.usage("import_chat"))
    sender = prep.msg.sender
    async with deps.db.read() as repos:
        pending = await repos.customers.pending_upload(sender.channel, sender.external_id, deps.now_ts())
    if pending is None:
        raise Refusal(Reply(texts.t("upload.nothing_pending")))
    if upload_id is not None and upload_id != pending.id:
        raise Refusal(Reply(texts.t("upload.replaced", file=pending.file_name)))
    parsed = await _parse(deps, pending.content, pending.file_name)
    now = deps.now_ts()
    async with deps.db.transaction() as repos:
        taken = await repos.customers.take_upload(pending.id, sender.channel, sender.external_id, now)
    if not taken:  # confirmed a moment ago, replaced or expired meanwhile
        raise Refusal(Reply(texts.t("upload.nothing_pending")))
    plan = await importing.confirm(deps.db, parsed, now)
    outcome = plan.outcome()
    await asyncio.to_thread(drain, plan.new, plan.updated, parsed.rows)
    return Imported(outcome)


async def confirm_import(req: Request, deps: Deps, prepared: Imported) -> list[Reply]:
    """/import confirm: the summary of the import its `prepare` step ran (once)."""
    outcome = prepared.outcome
    summary = Reply("\n".join(importing.summary_lines(deps.texts, outcome, applied=True)), secret=True)
    if req.msg.button is not None:  # a press: a short word on the presser's screen, the summary in the chat
        return [Reply(deps.texts.t("upload.importing")), summary]
    return [summary]
