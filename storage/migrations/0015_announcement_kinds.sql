-- Announcement kinds and subjects. The database knows every kind (a table a feature's own migration adds its
-- kinds to; an unknown kind is refused by a foreign key), and an announcement is about at most one subject,
-- (subject_kind, subject_id), in place of one nullable column per feature. The former columns stay as
-- read-only generated columns over the subject, so each subject kind keeps its foreign key.
--
-- SQLite cannot add a constraint to an existing table: the table is rebuilt. Foreign keys stay on; deferred
-- for this transaction, the rows that reference announcements (deliveries, greeting plans, birthdays) are
-- checked again when they are copied back, and the migration fails rather than lose any of them.

CREATE TABLE announcement_kinds (
    kind TEXT PRIMARY KEY CHECK (length(kind) > 0 AND kind NOT GLOB '*[^a-z_]*')
) WITHOUT ROWID;
INSERT INTO announcement_kinds(kind) VALUES
    ('now'), ('scheduled'), ('staff'), ('promo'), ('cancel'), ('sale_early'), ('sale_start'), ('sale_expired'),
    ('groupbuy'), ('groupbuy_close'), ('groupbuy_result'), ('poll'), ('poll_native'), ('poll_close'),
    ('poll_results'), ('followup'), ('greeting'), ('birthday'), ('winback'), ('feedback'), ('points'),
    ('referral'), ('binding');

PRAGMA defer_foreign_keys = ON;

CREATE TABLE announcements_0014 AS SELECT * FROM announcements;
DROP TABLE announcements;

CREATE TABLE announcements (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL REFERENCES announcement_kinds(kind),
    audience     TEXT    NOT NULL,                  -- 'all', 'members', 'groups', 'tiers', 'signups', 'staff', 'personal'
    tiers        TEXT,                              -- comma-separated tier ids for audience 'tiers'
    text         TEXT    NOT NULL CHECK (length(text) > 0),
    buttons      TEXT    NOT NULL DEFAULT '[]',     -- JSON [[label, data], ...]
    subject_kind TEXT    CHECK (subject_kind IS NULL OR length(subject_kind) > 0),   -- 'event', 'sale', ...
    subject_id   INTEGER,                           -- the subject's id in its own table
    lead         TEXT,                              -- promo lead ('5d', '2h', 'now')
    due_at       INTEGER NOT NULL,                  -- unix seconds, UTC
    state        TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (state IN ('pending', 'queued', 'skipped', 'cancelled')),
    outcome      TEXT    NOT NULL DEFAULT '',       -- e.g. 'late 2h 5m', 'missed: past the grace time'
    image        BLOB,                              -- a picture sent with the text (a results chart)
    created_by   INTEGER REFERENCES members(id),
    created_at   INTEGER NOT NULL,
    queued_at    INTEGER,
    outcome_reported_at INTEGER,                    -- when staff were told; NULL: not yet
    -- read-only, for the subject kinds with a foreign key (write subject_kind and subject_id instead)
    event_id     INTEGER GENERATED ALWAYS AS (CASE WHEN subject_kind = 'event' THEN subject_id END) VIRTUAL
                 REFERENCES events(id),
    sale_id      INTEGER GENERATED ALWAYS AS (CASE WHEN subject_kind = 'sale' THEN subject_id END) VIRTUAL
                 REFERENCES sales(id),
    group_buy_id INTEGER GENERATED ALWAYS AS (CASE WHEN subject_kind = 'group_buy' THEN subject_id END) VIRTUAL
                 REFERENCES group_buys(id),
    poll_id      INTEGER GENERATED ALWAYS AS (CASE WHEN subject_kind = 'poll' THEN subject_id END) VIRTUAL
                 REFERENCES polls(id),
    member_id    INTEGER GENERATED ALWAYS AS (CASE WHEN subject_kind = 'member' THEN subject_id END) VIRTUAL
                 REFERENCES members(id),
    CHECK ((subject_kind IS NULL) = (subject_id IS NULL))
);

INSERT INTO announcements(id, kind, audience, tiers, text, buttons, subject_kind, subject_id, lead, due_at, state,
                          outcome, image, created_by, created_at, queued_at, outcome_reported_at)
SELECT id, kind, audience, tiers, text, buttons,
       CASE WHEN event_id IS NOT NULL THEN 'event' WHEN sale_id IS NOT NULL THEN 'sale'
            WHEN group_buy_id IS NOT NULL THEN 'group_buy' WHEN poll_id IS NOT NULL THEN 'poll'
            WHEN member_id IS NOT NULL THEN 'member' END,
       COALESCE(event_id, sale_id, group_buy_id, poll_id, member_id),
       lead, due_at, state, outcome, image, created_by, created_at, queued_at, outcome_reported_at
FROM announcements_0014;
DROP TABLE announcements_0014;

CREATE INDEX announcements_due ON announcements(state, due_at);
CREATE INDEX announcements_subject ON announcements(subject_kind, subject_id, state);
CREATE INDEX announcements_unreported ON announcements(id) WHERE outcome_reported_at IS NULL;
