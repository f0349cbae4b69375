-- An explicit key for the two tables read in the order their rows were written (the check-in board's latest
-- lines, the inbox's pending updates): PostgreSQL has no rowid, so both engines order by `id` instead. On SQLite
-- `id` is the rowid itself (INTEGER PRIMARY KEY): each row keeps its number, and a table with a rowid plus a
-- unique index is what there was before, so nothing gets slower. The old primary keys become UNIQUE.

CREATE TABLE checkins_0023 (
    id         INTEGER PRIMARY KEY,
    member_id  INTEGER NOT NULL REFERENCES members(id),
    day        TEXT    NOT NULL,                    -- business day 'YYYY-MM-DD' in the shop's zone
    streak     INTEGER NOT NULL CHECK (streak >= 1),
    points     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    chat       TEXT,                                -- 'channel:chat id' of the group it was made in
    UNIQUE (member_id, day)
);
INSERT INTO checkins_0023(id, member_id, day, streak, points, created_at, chat)
    SELECT rowid, member_id, day, streak, points, created_at, chat FROM checkins;
DROP TABLE checkins;
ALTER TABLE checkins_0023 RENAME TO checkins;
CREATE INDEX checkins_day ON checkins(day);
CREATE INDEX checkins_day_member ON checkins(day, member_id);           -- active members: who checked in
CREATE INDEX checkins_chat_day ON checkins(chat, day, created_at);

CREATE TABLE inbox_0023 (
    id          INTEGER PRIMARY KEY,
    key         TEXT    NOT NULL UNIQUE,           -- e.g. 'telegram:update:42': the update's identity
    channel     TEXT    NOT NULL,
    payload     TEXT,                              -- the raw update (JSON) as stored; NULL when only its key is kept
    received_at INTEGER NOT NULL,
    done_at     INTEGER                            -- set in the same transaction as the handler's effects
);
INSERT INTO inbox_0023(id, key, channel, payload, received_at, done_at)
    SELECT rowid, key, channel, payload, received_at, done_at FROM inbox WHERE key IS NOT NULL;
DROP TABLE inbox;
ALTER TABLE inbox_0023 RENAME TO inbox;
CREATE INDEX inbox_pending ON inbox(channel, received_at) WHERE done_at IS NULL;
CREATE INDEX inbox_done ON inbox(done_at) WHERE done_at IS NOT NULL;
