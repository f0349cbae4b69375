"""Announcement kinds and subjects: one enum the schema agrees with, unknown kinds refused by the database, a kind
of a new feature registered and fired without touching the scheduler, cancelling by subject, and the migration
that moved the per-feature columns onto (subject_kind, subject_id)."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from handlers.core.clock import FakeClock
from handlers.core.deps import Deps
from handlers.core.feature import Feature
from handlers.core.kinds import AnnouncementKind, DueRule, SubjectKind
from handlers.core.table import assemble
from handlers.features import FEATURES
from handlers.shared.broadcast import plan_at
from handlers.shared.due import run_due
from storage.announcements import Announcement
from storage.db.database import migration_scripts
from storage.repos import Repos
from tests.conftest import ChatDriver, RecordingPusher, settle

TEST_KIND = "test_reminder"
"""A kind no shipped feature uses: a feature added later, with its own migration and rule."""


@pytest.fixture
def test_kind(chat: ChatDriver) -> list[Announcement]:
    """A feature added later declares TEST_KIND (when due its text gets a suffix; one about member 2 is
    skipped) and is listed beside the shipped ones. Returns the announcements its `prepare` saw."""
    seen: list[Announcement] = []

    async def prepare(repos: Repos, deps: Deps, ann: Announcement) -> Announcement:
        seen.append(ann)
        await repos.announcements.set_text(ann.id, f"{ann.text} (prepared)")
        updated = await repos.announcements.get(ann.id)
        assert updated is not None
        return updated

    async def skip(repos: Repos, deps: Deps, ann: Announcement, now: int) -> str | None:
        return "member 2 asked for quiet" if ann.subject == (SubjectKind.MEMBER, 2) else None

    reminders = Feature("test_reminders", due_rules={TEST_KIND: DueRule(prepare=prepare, skip=skip)})
    chat.runtime.deps = replace(chat.runtime.deps, kinds=assemble((*FEATURES, reminders)).kinds)
    return seen


async def _add_test_kind(deps: Deps) -> None:
    """What the new feature's own migration does."""
    async with deps.db.transaction() as repos:
        await repos.conn.execute("INSERT INTO announcement_kinds(kind) VALUES (?)", (TEST_KIND,))


async def test_a_new_kind_is_registered_and_fired_by_the_scheduler(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher, test_kind: list[Announcement]
) -> None:
    deps = chat.runtime.deps
    await chat.say("bob", "hi")  # bob (member 1) in a VIP group
    await chat.say("ann", "hi")  # member 2
    await _add_test_kind(deps)
    due = clock.now() + timedelta(hours=1)
    async with deps.db.transaction() as repos:
        fired = await plan_at(repos, deps, TEST_KIND, "groups", "Tea tasting tonight", due,
                              subject=(SubjectKind.MEMBER, 1))  # fmt: skip
        skipped = await plan_at(repos, deps, TEST_KIND, "groups", "Quiet one", due, subject=(SubjectKind.MEMBER, 2))
    clock.set(due)
    assert await run_due(deps) == [fired]
    await settle(chat.runtime)
    assert [ann.id for ann in test_kind] == [fired]  # prepared once, with its subject
    assert test_kind[0].subject == (SubjectKind.MEMBER, 1)
    assert "Tea tasting tonight (prepared)" in [text for kind, _, text in pusher.pushes if kind == "chat"]
    assert not any("Quiet one" in text for _, _, text in pusher.pushes)
    async with deps.db.read() as repos:
        quiet = await repos.announcements.get(skipped)
    assert quiet is not None and quiet.state == "skipped" and quiet.outcome == "member 2 asked for quiet"


async def test_a_new_kind_is_cancelled_by_its_subject(
    chat: ChatDriver, clock: FakeClock, pusher: RecordingPusher, test_kind: list[Announcement]
) -> None:
    deps = chat.runtime.deps
    await chat.say("bob", "hi")
    await _add_test_kind(deps)
    due = clock.now() + timedelta(hours=1)
    async with deps.db.transaction() as repos:
        first = await plan_at(repos, deps, TEST_KIND, "groups", "One", due, subject=(SubjectKind.MEMBER, 1))
        other = await plan_at(repos, deps, AnnouncementKind.SCHEDULED, "groups", "Other", due)
        assert await repos.announcements.cancel_pending_for(SubjectKind.MEMBER, 1) == [first]
        assert await repos.announcements.cancel_pending_for(SubjectKind.MEMBER, 1) == []  # once
    clock.set(due)
    assert await run_due(deps) == [other]
    assert test_kind == []


async def test_the_schema_refuses_an_unknown_kind(chat: ChatDriver) -> None:
    deps = chat.runtime.deps
    with pytest.raises(sqlite3.IntegrityError):
        async with deps.db.transaction() as repos:
            await repos.announcements.create("no_such_kind", "groups", "text", 0, 0)
    with pytest.raises(sqlite3.IntegrityError):  # nor a subject that does not exist
        async with deps.db.transaction() as repos:
            await repos.announcements.create(AnnouncementKind.SCHEDULED, "groups", "text", 0, 0,
                                             subject=(SubjectKind.EVENT, 404))  # fmt: skip


async def test_the_schema_knows_every_kind_of_the_enum(chat: ChatDriver) -> None:
    # The enum lists the shipped kinds; a feature added later may bring its own kind with its own migration
    # (TEST_KIND above) without touching the enum.
    async with chat.runtime.deps.db.read() as repos:
        rows = await repos.conn.execute_fetchall("SELECT kind FROM announcement_kinds")
    in_schema = {r[0] for r in rows}
    assert {k.value for k in AnnouncementKind} <= in_schema
    assert {"promo", "poll_close", "birthday"} <= in_schema and TEST_KIND not in in_schema


def _database_at(path: Path, version: int) -> sqlite3.Connection:
    """A database migrated up to `version`, the way `storage.db.database` migrates (foreign keys on)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, name TEXT NOT NULL)")
    for number, name, sql in migration_scripts():
        if number <= version:
            _apply(conn, number, name, sql)
    return conn


def _apply(conn: sqlite3.Connection, number: int, name: str, sql: str) -> None:
    conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nINSERT INTO schema_version VALUES ({number}, '{name}');\nCOMMIT;")


def _migrate_to(conn: sqlite3.Connection, version: int) -> None:
    for number, name, sql in migration_scripts():
        if number == version:
            _apply(conn, number, name, sql)


def test_the_migration_moves_every_subject_and_keeps_what_refers_to_announcements(tmp_path: Path) -> None:
    conn = _database_at(tmp_path / "old.db", 14)
    conn.executescript(
        """
        INSERT INTO members(id, display_name, joined_at, last_seen_at) VALUES (7, 'Ann', 0, 0);
        INSERT INTO events(id, title, starts_at, created_at) VALUES (3, 'Tasting', 100, 0);
        INSERT INTO sales(id, item, price_fen, stock, starts_at, created_at) VALUES (4, 'Tea', 100, 5, 100, 0);
        INSERT INTO group_buys(id, item, price_fen, group_price_fen, min_members, deadline_at, created_at)
            VALUES (5, 'Set', 300, 199, 3, 100, 0);
        INSERT INTO polls(id, kind, question, closes_at, created_at) VALUES (6, 'rating', 'How?', 100, 0);
        INSERT INTO announcements(id, kind, audience, text, event_id, lead, due_at, created_at)
            VALUES (1, 'promo', 'all', 'event promo', 3, '5d', 50, 0);
        INSERT INTO announcements(id, kind, audience, text, sale_id, due_at, created_at, state, outcome)
            VALUES (2, 'sale_start', 'groups', 'sale opens', 4, 60, 0, 'queued', 'late 3 min');
        INSERT INTO announcements(id, kind, audience, text, group_buy_id, due_at, created_at)
            VALUES (3, 'groupbuy_close', 'groups', 'deadline', 5, 70, 0);
        INSERT INTO announcements(id, kind, audience, text, poll_id, image, due_at, created_at)
            VALUES (4, 'staff', 'staff', 'results', 6, x'89504e47', 80, 0);
        INSERT INTO announcements(id, kind, audience, text, member_id, due_at, created_at)
            VALUES (5, 'followup', 'personal', 'rate us', 7, 90, 0);
        INSERT INTO announcements(id, kind, audience, tiers, text, buttons, due_at, created_at, created_by)
            VALUES (6, 'scheduled', 'tiers', 'gold,diamond', 'hello', '[["Join", "v1:join:3"]]', 95, 0, 7);
        INSERT INTO deliveries(announcement_id, channel, target_kind, target, member_id, state)
            VALUES (2, 'telegram', 'chat', '-100', NULL, 'sent'), (5, 'telegram', 'user', '77', 7, 'pending');
        INSERT INTO greeting_plans(holiday_id, day, announcement_id, planned_at) VALUES ('spring', '2026-02-17', 6, 0);
        """
    )
    _migrate_to(conn, 15)
    rows = conn.execute(
        "SELECT id, kind, subject_kind, subject_id, event_id, sale_id, group_buy_id, poll_id, member_id FROM"
        " announcements ORDER BY id"
    ).fetchall()
    assert rows == [
        (1, "promo", "event", 3, 3, None, None, None, None),
        (2, "sale_start", "sale", 4, None, 4, None, None, None),
        (3, "groupbuy_close", "group_buy", 5, None, None, 5, None, None),
        (4, "staff", "poll", 6, None, None, None, 6, None),
        (5, "followup", "member", 7, None, None, None, None, 7),
        (6, "scheduled", None, None, None, None, None, None, None),
    ]
    # everything else of each row is kept
    kept = conn.execute(
        "SELECT lead, state, outcome, tiers, buttons, created_by, hex(image), due_at FROM announcements ORDER BY id"
    ).fetchall()
    assert kept[0][0] == "5d" and kept[1][1:3] == ("queued", "late 3 min") and kept[3][6] == "89504E47"
    assert kept[5][3:6] == ("gold,diamond", '[["Join", "v1:join:3"]]', 7)
    assert [k[7] for k in kept] == [50, 60, 70, 80, 90, 95]
    # what refers to announcements still does, and the foreign keys hold
    assert conn.execute("SELECT announcement_id, state FROM deliveries ORDER BY id").fetchall() == [
        (2, "sent"),
        (5, "pending"),
    ]
    assert conn.execute("SELECT announcement_id FROM greeting_plans").fetchall() == [(6,)]
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'"
                                          " AND tbl_name = 'announcements'")}  # fmt: skip
    assert {"announcements_due", "announcements_subject", "announcements_unreported"} <= indexes
    # the schema holds after the migration: an unknown kind, a subject that does not exist, a half subject
    for bad in (
        "INSERT INTO announcements(kind, audience, text, due_at, created_at) VALUES ('nope', 'all', 't', 0, 0)",
        "INSERT INTO announcements(kind, audience, text, subject_kind, subject_id, due_at, created_at)"
        " VALUES ('promo', 'all', 't', 'event', 99, 0, 0)",
        "INSERT INTO announcements(kind, audience, text, subject_kind, due_at, created_at)"
        " VALUES ('promo', 'all', 't', 'event', 0, 0)",
    ):
        with pytest.raises(sqlite3.IntegrityError):
            conn.execute(bad)
    conn.close()
