"""Importing customers: one function computes the plan (new, updated, unchanged and bad rows) from the parsed
rows and the database, for the dry run and the confirmation on a read snapshot. The confirmation then writes
the rows to add or change in chunks of `CHUNK_ROWS`, one short transaction each, which re-checks its own rows
against the database as it is then (planning them again if something changed since the snapshot) and writes
them with a few bulk statements (`storage.customers.CustomerRepo.apply`): other writes (the bot's answers) wait
for one chunk at most, never for the whole file.

Points are ledger entries (reason 'import'), so every balance still equals its ledger and tiers follow lifetime
points. A row's profile remembers what the last file said; a later file books only the difference:

* lifetime points: one entry of `d_earned` points that also moves lifetime points by `d_earned`;
* the balance: one entry of `d_balance - d_earned` points that leaves lifetime points alone (what the customer
  redeemed before, or a correction), so the balance moves by `d_balance` in all.

Entries that raise a balance are booked before those that lower it, so no balance dips below zero on the way.
An entry's idempotency key is derived from the phone (a digest: the ledger keeps no phone number), the profile's
next revision and the new value, so the same confirmation twice books it once; re-importing the same file finds
every row unchanged and books nothing at all. A chunk writes a row's entries and its profile's next revision
together, so a confirmation that failed part-way and is run again books nothing twice and imports the rest.

The parsing and the planning are plain Python over every row: they run on a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from handlers.audit.commands import record_command_line
from handlers.core.i18n import LOCALES, Catalog
from handlers.core.rules import Rules, Tier
from handlers.customers.memory import drain, few_full_collections
from handlers.customers.rows import (
    TEMPLATE_EXAMPLE,
    TEMPLATE_HEADER,
    BadRow,
    CustomerRow,
    MissingColumn,
    ParsedRows,
    parse_table,
    tier_lookup,
)
from handlers.customers.spreadsheet import Table, UnreadableFile, document, read_bytes, read_table
from storage.customers import ImportPayload, KnownCustomer, encode_import
from storage.db.database import Database
from storage.repos import Repos


@dataclass(frozen=True, slots=True)
class Change:
    """A new or changed row: the member (None: a new one), the profile's next revision and the ledger entries
    (delta, earned delta, ref, idem key)."""

    row: CustomerRow
    member_id: int | None
    name: str
    birthday: str | None
    note: str
    telegram: str | None
    openid: str | None
    balance: int
    earned: int
    entries: list[tuple[int, int, str, str]]
    new_openid: bool


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an import found or did, in short: the counts and the bad rows."""

    new: int
    updated: int
    unchanged: int
    bad: list[BadRow]


@dataclass(slots=True)
class Plan:
    new: list[Change] = field(default_factory=list)
    updated: list[Change] = field(default_factory=list)
    unchanged: int = 0
    bad: list[BadRow] = field(default_factory=list)

    def outcome(self) -> Outcome:
        return Outcome(len(self.new), len(self.updated), self.unchanged, self.bad)


CHUNK_ROWS = 100
"""Rows planned and encoded together (a piece of a transaction, `Chunk`)."""
CHUNK_SECONDS = 0.03
"""A confirming transaction writes one chunk after another until it has held the write lock this long (or has
written CHUNKS_PER_TRANSACTION): on a busy machine it writes fewer, so another write waits about this long plus
one chunk, not more. Measured at 100,000 rows (bench/import_members.py, 2 CPUs): 100 rows take 8-15 ms."""
CHUNKS_PER_TRANSACTION = 5
SETTLE_AFTER_CHANGES = 4_000
"""Rows written (members, profiles, ledger entries and the balances they move) after which the confirmation
waits for the WAL to be copied back into the database (`Database.settle`): about every 5 transactions, so the
WAL stays a few megabytes and never needs the TRUNCATE checkpoint that holds every write up."""


def phone_digest(phone: str) -> str:
    return hashlib.sha256(f"vipbot-customer:{phone}".encode()).hexdigest()[:20]


def _entries(phone: str, revision: int, d_balance: int, d_earned: int, balance: int, earned: int) -> list[
    tuple[int, int, str, str]
]:  # fmt: skip
    """The ledger entries that move a member by d_balance points and d_earned lifetime points."""
    key = f"import:{phone_digest(phone)}:r{revision}"
    entries = []
    if d_earned:
        entries.append((d_earned, d_earned, "import:earned", f"{key}:earned:{earned}"))
    rest = d_balance - d_earned
    if rest:
        entries.append((rest, 0, "import:balance", f"{key}:balance:{balance}"))
    return entries


def default_name(phone: str) -> str:
    return f"{phone[:3]}****{phone[-4:]}"


def compute_plan(
    parsed: ParsedRows, known: dict[str, KnownCustomer], openid_owners: dict[str, int]
) -> Plan:  # fmt: skip
    """What importing `parsed` would do, given the profiles by phone and the members the rows' WeChat OpenIDs
    already belong to. Pure: the same for the dry run and the confirmation."""
    plan = Plan(bad=list(parsed.bad))
    openid_lines: dict[str, int] = {}
    for row in parsed.rows:
        before = known.get(row.phone)
        if row.openid is not None:
            owner = openid_owners.get(row.openid)
            if owner is not None and (before is None or owner != before.member_id):
                plan.bad.append(BadRow(row.line, "openid_taken", {"member": owner}))
                continue
            if row.openid in openid_lines:
                plan.bad.append(BadRow(row.line, "duplicate_openid", {"first": openid_lines[row.openid]}))
                continue
            openid_lines[row.openid] = row.line
        if before is None:
            balance, earned = row.balance or 0, row.earned or 0
            plan.new.append(
                Change(
                    row, None, row.name or default_name(row.phone), row.birthday, row.note or "", row.telegram,
                    row.openid, balance, earned, _entries(row.phone, 1, balance, earned, balance, earned),
                    row.openid is not None,
                )
            )  # fmt: skip
            continue
        after = Change(
            row, before.member_id, row.name if row.name is not None else before.name,
            row.birthday if row.birthday is not None else before.birthday,
            row.note if row.note is not None else before.note,
            row.telegram if row.telegram is not None else before.telegram_username,
            row.openid if row.openid is not None else before.wechat_openid,
            row.balance if row.balance is not None else before.imported_balance,
            row.earned if row.earned is not None else before.imported_earned,
            [], False,
        )  # fmt: skip
        same = (after.name, after.birthday, after.note, after.telegram, after.openid, after.balance, after.earned) == (
            before.name, before.birthday, before.note, before.telegram_username, before.wechat_openid,
            before.imported_balance, before.imported_earned,
        )  # fmt: skip
        if same:
            plan.unchanged += 1
            continue
        d_balance, d_earned = after.balance - before.imported_balance, after.earned - before.imported_earned
        if before.balance + d_balance < 0:
            plan.bad.append(BadRow(row.line, "balance_below_zero", {"balance": before.balance, "change": d_balance}))
            continue
        entries = _entries(row.phone, before.revision + 1, d_balance, d_earned, after.balance, after.earned)
        new_openid = (
            after.openid is not None and after.openid != before.wechat_openid and row.openid not in openid_owners
        )
        plan.updated.append(
            Change(
                row, before.member_id, after.name, after.birthday, after.note, after.telegram, after.openid,
                after.balance, after.earned, entries, new_openid,
            )
        )  # fmt: skip
    plan.bad.sort(key=lambda bad: bad.line)
    return plan


def payload_of(plan: Plan) -> ImportPayload:
    """The rows `CustomerRepo.apply` writes for `plan`, encoded: new members take the ids -1, -2, … (the ids
    after the chunk's base, `ImportPayload`). Plain Python: call it off the loop."""
    members, profiles, identities = [], [], []
    raising: list[tuple[int, int, int, str, str]] = []
    lowering: list[tuple[int, int, int, str, str]] = []
    new_id = 0
    for change in (*plan.new, *plan.updated):
        if change.member_id is None:
            new_id -= 1
            member_id = new_id
        else:
            member_id = change.member_id
        members.append((member_id, change.name, change.birthday))
        profiles.append((member_id, change.row.phone, change.note, change.telegram, change.openid,
                         change.balance, change.earned))  # fmt: skip
        for delta, earned_delta, ref, key in change.entries:
            (raising if delta > 0 else lowering).append((member_id, delta, earned_delta, ref, key))
        if change.new_openid and change.openid is not None:
            identities.append((change.openid, member_id, change.name))
    return encode_import(members, profiles, raising + lowering, identities)


# --- the use cases ------------------------------------------------------------------------------------------
@functools.cache
def _catalog(locale: str) -> Catalog:
    return Catalog(locale)


def tier_names(tier: Tier) -> list[str]:
    """A tier's display names in every locale (its configured name first), for matching a tier column."""
    names = [tier.name] if tier.name else []
    return names + [_catalog(locale).t(f"tier.{tier.id}") for locale in LOCALES]


def parse_file(path: Path, rules: Rules, names: Callable[[Tier], list[str]] = tier_names) -> ParsedRows:
    """Read and check every row of the file (slow for a big file: call it off the loop). Raises
    UnreadableFile (also for a file without a phone column)."""
    with few_full_collections():
        return _parse(read_table(path), rules, names)


def parse_content(content: bytes, name: str, rules: Rules) -> ParsedRows:
    """`parse_file` for a file's bytes (one sent to the bot), read by the ending of `name`."""
    with few_full_collections():
        return _parse(read_bytes(content, name), rules, tier_names)


def _parse(table: Table, rules: Rules, names: Callable[[Tier], list[str]]) -> ParsedRows:
    try:
        return parse_table(table, rules, tier_lookup(rules, names))
    except MissingColumn:
        raise UnreadableFile("no phone column (手机 / phone)") from None
    finally:
        drain(table.rows)


async def make_plan(repos: Repos, parsed: ParsedRows) -> Plan:
    """The plan of every row against what `repos` sees (a read snapshot, or an update's transaction)."""
    known = await repos.customers.known()
    owners = await repos.customers.wechat_owners(sorted({r.openid for r in parsed.rows if r.openid}))
    return await asyncio.to_thread(_plan_and_drop, parsed, known, owners)


def _plan_and_drop(parsed: ParsedRows, known: dict[str, KnownCustomer], owners: dict[str, int]) -> Plan:
    plan = compute_plan(parsed, known, owners)
    drain(known)
    return plan


async def dry_run(db: Database, parsed: ParsedRows) -> Plan:
    with few_full_collections():
        async with db.read() as repos:
            return await make_plan(repos, parsed)


async def confirm(db: Database, parsed: ParsedRows, now: int, *, command_line: str | None = None) -> Plan:
    """Apply the file; returns what was applied (the counts over every chunk). The plan is made on a read
    snapshot, outside the write lock; the rows it would change are then written `CHUNK_ROWS` at a time, a few
    chunks (at most CHUNK_SECONDS' worth) per short transaction that first re-checks each chunk's rows against
    the database as it is now (`_apply_chunks`), so other writes (a member's check-in) wait for one short
    transaction at most, never for the file; and those that wait go first (`background`).

    A transaction is all or nothing: after a failure part-way the chunks before it stay imported, and confirming
    the same file again finds them unchanged and writes the rest. Inside an update's transaction
    (`Database.unit`) the chunks are savepoints of it. From the command line (`command_line`: its arguments) the
    first transaction writes the audit row (a transaction of its own when nothing changes); a chat's
    confirmation is audited by the dispatcher."""
    with few_full_collections():
        async with db.read() as repos:
            known = await repos.customers.known()
            owners = await repos.customers.wechat_owners(sorted({r.openid for r in parsed.rows if r.openid}))
        planned = await asyncio.to_thread(compute_plan, parsed, known, owners)
        chunks = await asyncio.to_thread(_chunks, planned, known, owners)
        done = Plan(unchanged=planned.unchanged, bad=planned.bad)
        audit = command_line
        own_transactions = _outside_a_transaction(db)
        at = 0
        while at < len(chunks):
            applied, at = await _apply_chunks(db, chunks, at, now, audit)
            audit = None
            done.new += applied.new
            done.updated += applied.updated
            done.unchanged += applied.unchanged
            done.bad += applied.bad
            if own_transactions:  # (inside one, a WAL checkpoint may be waiting for it: never wait for that)
                await db.settle(after_changes=SETTLE_AFTER_CHANGES)  # the WAL restarts instead of growing
        if audit is not None:  # nothing to write: the confirmation is still audited
            async with db.transaction() as repos:
                await record_command_line(repos, "import", audit, now)
        done.bad.sort(key=lambda bad: bad.line)
        await asyncio.to_thread(_drop, known, chunks)
        return done


def _outside_a_transaction(db: Database) -> bool:
    """Whether the running task is outside any transaction (`Database.on_commit` then calls back at once)."""
    now: list[bool] = []
    db.on_commit(lambda: now.append(True))
    return bool(now)


def _drop(known: dict[str, KnownCustomer], chunks: list[Chunk]) -> None:
    drain(known)
    for chunk in chunks:
        drain(chunk.rows, chunk.known, chunk.owners, chunk.plan.new, chunk.plan.updated)


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rows written in one transaction, with what the snapshot said of them: their profiles (by phone), the
    owners of their WeChat OpenIDs, and the plan of these rows that followed."""

    rows: list[CustomerRow]
    known: dict[str, KnownCustomer]
    owners: dict[str, int]
    plan: Plan
    payload: ImportPayload
    """The plan's rows, encoded before the chunk's transaction (`payload_of`)."""


def _chunks(plan: Plan, known: dict[str, KnownCustomer], owners: dict[str, int]) -> list[Chunk]:
    """The rows `plan` adds or changes, CHUNK_ROWS at a time, in the order of their idempotency keys (the phone's
    digest): each chunk then adds to a few neighbouring pages of the ledger's key index instead of touching
    pages all over it, which makes its transaction shorter and its WAL smaller. Empties `plan`."""
    changes = sorted((*plan.new, *plan.updated), key=lambda change: phone_digest(change.row.phone))
    drain(plan.new, plan.updated)
    chunks = []
    for at in range(0, len(changes), CHUNK_ROWS):
        part = changes[at : at + CHUNK_ROWS]
        rows = [change.row for change in part]
        planned = Plan(
            new=[c for c in part if c.member_id is None], updated=[c for c in part if c.member_id is not None]
        )
        chunks.append(Chunk(
            rows,
            {row.phone: known[row.phone] for row in rows if row.phone in known},
            {row.openid: owners[row.openid] for row in rows if row.openid in owners},
            planned,
            payload_of(planned),
        ))  # fmt: skip
    drain(changes)
    return chunks


async def _apply_chunks(
    db: Database, chunks: list[Chunk], at: int, now: int, command_line: str | None
) -> tuple[Plan, int]:  # fmt: skip
    """One transaction that writes `chunks[at]` and the chunks after it while it has held the write lock for
    less than CHUNK_SECONDS (at most CHUNKS_PER_TRANSACTION): what it applied, and the next chunk's index. The
    bot's own writes that wait go first (`background`)."""
    applied = Plan()
    async with db.transaction(background=True) as repos:
        began = time.perf_counter()
        if command_line is not None:
            await record_command_line(repos, "import", command_line, now)
        for taken in range(CHUNKS_PER_TRANSACTION):
            if at == len(chunks) or (taken and time.perf_counter() - began >= CHUNK_SECONDS):
                break
            plan = await _apply_chunk(repos, chunks[at], now)
            applied.new += plan.new
            applied.updated += plan.updated
            applied.unchanged += plan.unchanged
            applied.bad += plan.bad
            at += 1
        return applied, at


async def _apply_chunk(repos: Repos, chunk: Chunk, now: int) -> Plan:
    """The chunk's profiles and WeChat owners read again, and the snapshot's plan of its rows written if they
    are still what the snapshot saw; if not (another import, a redemption or a claim came in between), the rows
    are planned again against what they are now: a row a concurrent change made unchanged books nothing, one it
    made impossible becomes a bad row."""
    known = await repos.customers.known_of([row.phone for row in chunk.rows])
    owners = await repos.customers.wechat_owners(sorted({row.openid for row in chunk.rows if row.openid}))
    plan, payload = chunk.plan, chunk.payload
    if (known, owners) != (chunk.known, chunk.owners):
        plan = compute_plan(ParsedRows(chunk.rows, []), known, owners)  # a chunk's rows: a few milliseconds
        payload = await asyncio.to_thread(payload_of, plan)
    if plan.new or plan.updated:
        base = await repos.customers.last_member_id()
        await repos.customers.apply(replace(payload, base=base), now)
    return plan


async def import_file(db: Database, path: Path, rules: Rules, *, apply: bool, now: int) -> Outcome:
    """`vipbot import members`: the file read and checked (on a worker thread), then the dry run, or with
    `apply` the confirmation. Full garbage collections wait meanwhile (`memory`). Raises UnreadableFile."""
    with few_full_collections():
        parsed = await asyncio.to_thread(parse_file, path, rules)
        command_line = f"members {path.name} --confirm"
        plan = await (confirm(db, parsed, now, command_line=command_line) if apply else dry_run(db, parsed))
        outcome = plan.outcome()
        await asyncio.to_thread(drain, plan.new, plan.updated, parsed.rows)
        return outcome


def summary_lines(texts: Catalog, plan: Outcome, *, applied: bool, hint: str = "import_cmd.confirm_hint") -> list[
    str
]:  # fmt: skip
    """The outcome as staff read it: the counts, then every bad row with its line and reason, then (for a dry
    run that would change something) how to confirm it: the catalog key `hint`."""
    key = "import_cmd.applied" if applied else "import_cmd.dry_run"
    lines = [texts.t(key, new=plan.new, updated=plan.updated, unchanged=plan.unchanged, bad=len(plan.bad))]
    for bad in plan.bad:
        lines.append(texts.t("import_cmd.bad_line", line=bad.line, reason=texts.t(f"import_cmd.row_{bad.reason}",
                                                                                  **bad.values)))  # fmt: skip
    if not applied and (plan.new or plan.updated):
        lines.append(texts.t(hint))
    return lines


def write_template(path: Path) -> None:
    """A file to fill in: the header row (Chinese names, each also accepted in English) and one example row.
    Raises UnreadableFile for an ending other than .xlsx or .csv, OSError if it cannot be written."""
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("xlsx", "csv"):
        raise UnreadableFile(path.suffix)
    path.write_bytes(document(kind, TEMPLATE_HEADER, [TEMPLATE_EXAMPLE]))
