-- Polls (rating, NPS, choice, ranking) with one answer per member, and native platform polls' ids.

CREATE TABLE polls (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL CHECK (kind IN ('rating', 'nps', 'choice', 'rank')),
    question   TEXT    NOT NULL CHECK (length(question) > 0),
    options    TEXT    NOT NULL DEFAULT '[]',       -- JSON list of option / item texts
    multi      INTEGER NOT NULL DEFAULT 0,          -- choice: several answers allowed
    tiers      TEXT,                                -- comma-separated tier ids allowed to answer; NULL: all
    points     INTEGER NOT NULL DEFAULT 0 CHECK (points >= 0),   -- participation points, once per member
    audience   TEXT    NOT NULL DEFAULT 'all',      -- where it was posted: 'groups', 'all' (groups + private)
    closes_at  INTEGER NOT NULL,
    state      TEXT    NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'closed')),
    series     TEXT    UNIQUE,                      -- e.g. 'survey:2026-12' for the recurring survey
    created_by INTEGER REFERENCES members(id),
    created_at INTEGER NOT NULL,
    closed_at  INTEGER
);

CREATE TABLE poll_answers (
    poll_id     INTEGER NOT NULL REFERENCES polls(id),
    member_id   INTEGER NOT NULL REFERENCES members(id),
    answer      TEXT    NOT NULL,                   -- JSON: a number, a list of option indexes, or a ranking
    complete    INTEGER NOT NULL DEFAULT 1,         -- 0 while a ranking is being built tap by tap
    answered_at INTEGER NOT NULL,
    PRIMARY KEY (poll_id, member_id)               -- one answer per member, changeable while open
);

CREATE TABLE poll_native (
    channel   TEXT    NOT NULL,
    native_id TEXT    NOT NULL,                     -- e.g. Telegram's poll id of a sendPoll message
    poll_id   INTEGER NOT NULL REFERENCES polls(id),
    PRIMARY KEY (channel, native_id)
);

ALTER TABLE announcements ADD COLUMN poll_id INTEGER REFERENCES polls(id);
ALTER TABLE announcements ADD COLUMN image BLOB;    -- a picture sent with the text (a results chart)
ALTER TABLE announcements ADD COLUMN member_id INTEGER REFERENCES members(id);   -- a one-member announcement
