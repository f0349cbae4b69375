-- Group chats, notification preferences, events with sign-ups, announcements and the delivery queue.

ALTER TABLE members ADD COLUMN notify INTEGER NOT NULL DEFAULT 1;   -- private notices wanted (/notify)

CREATE TABLE chats (
    channel  TEXT    NOT NULL,
    chat_id  TEXT    NOT NULL,
    title    TEXT    NOT NULL DEFAULT '',
    added_at INTEGER NOT NULL,
    PRIMARY KEY (channel, chat_id)                  -- the VIP group chats announcements go to
);

CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    title         TEXT    NOT NULL CHECK (length(title) > 0),
    description   TEXT    NOT NULL DEFAULT '',
    starts_at     INTEGER NOT NULL,                 -- unix seconds, UTC
    capacity      INTEGER CHECK (capacity IS NULL OR capacity > 0),
    attend_points INTEGER NOT NULL DEFAULT 0 CHECK (attend_points >= 0),
    state         TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'cancelled')),
    forced        INTEGER NOT NULL DEFAULT 0,       -- created inside the promo lead time with --force
    created_by    INTEGER REFERENCES members(id),
    created_at    INTEGER NOT NULL
);
CREATE INDEX events_start ON events(state, starts_at);

CREATE TABLE event_signups (
    event_id    INTEGER NOT NULL REFERENCES events(id),
    member_id   INTEGER NOT NULL REFERENCES members(id),
    state       TEXT    NOT NULL DEFAULT 'joined' CHECK (state IN ('joined', 'withdrawn')),
    joined_at   INTEGER NOT NULL,
    attended_at INTEGER,
    PRIMARY KEY (event_id, member_id)
);

CREATE TABLE announcements (
    id         INTEGER PRIMARY KEY,
    kind       TEXT    NOT NULL,                    -- 'now', 'scheduled', 'promo', 'cancel', 'staff'
    audience   TEXT    NOT NULL,                    -- 'all', 'tiers', 'signups', 'staff'
    tiers      TEXT,                                -- comma-separated tier ids for audience 'tiers'
    text       TEXT    NOT NULL CHECK (length(text) > 0),
    buttons    TEXT    NOT NULL DEFAULT '[]',       -- JSON [[label, data], ...]
    event_id   INTEGER REFERENCES events(id),
    lead       TEXT,                                -- promo lead ('5d', '2h', 'now')
    due_at     INTEGER NOT NULL,                    -- unix seconds, UTC
    state      TEXT    NOT NULL DEFAULT 'pending'
               CHECK (state IN ('pending', 'queued', 'skipped', 'cancelled')),
    outcome    TEXT    NOT NULL DEFAULT '',         -- e.g. 'late 2h 5m', 'missed: past the grace time'
    created_by INTEGER REFERENCES members(id),
    created_at INTEGER NOT NULL,
    queued_at  INTEGER
);
CREATE INDEX announcements_due ON announcements(state, due_at);
CREATE INDEX announcements_event ON announcements(event_id, state);

CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY,
    announcement_id INTEGER NOT NULL REFERENCES announcements(id),
    channel         TEXT    NOT NULL,
    target_kind     TEXT    NOT NULL CHECK (target_kind IN ('chat', 'user', 'staff')),
    target          TEXT    NOT NULL,               -- chat id, a user's external id, or '' for staff
    member_id       INTEGER REFERENCES members(id),
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'sending', 'sent', 'failed', 'uncertain')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at REAL    NOT NULL DEFAULT 0,     -- wall-clock unix seconds (rate limits are real time)
    last_error      TEXT    NOT NULL DEFAULT '',
    sent_at         INTEGER,
    UNIQUE (announcement_id, channel, target_kind, target)   -- never two rows for one recipient
);
CREATE INDEX deliveries_due ON deliveries(state, next_attempt_at);
CREATE INDEX deliveries_announcement ON deliveries(announcement_id, state);
