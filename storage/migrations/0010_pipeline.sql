-- The pipeline: updates are stored before they are acknowledged (inbox), replies are queued durably
-- (outbound), and each group has one check-in board per business day.

CREATE TABLE inbox (
    key         TEXT    PRIMARY KEY,               -- e.g. 'telegram:update:42': the update's identity
    channel     TEXT    NOT NULL,
    payload     TEXT,                              -- the raw update (JSON) as stored; NULL when only its key is kept
    received_at INTEGER NOT NULL,
    done_at     INTEGER                            -- set in the same transaction as the handler's effects
);
CREATE INDEX inbox_pending ON inbox(channel, received_at) WHERE done_at IS NULL;
CREATE INDEX inbox_done ON inbox(done_at) WHERE done_at IS NOT NULL;
INSERT INTO inbox(key, channel, received_at, done_at)
    SELECT key, substr(key, 1, instr(key, ':') - 1), seen_at, seen_at FROM seen_updates WHERE instr(key, ':') > 0;
DROP TABLE seen_updates;

CREATE TABLE outbound (
    id          INTEGER PRIMARY KEY,
    channel     TEXT    NOT NULL,
    chat_id     TEXT    NOT NULL,
    priority    INTEGER NOT NULL CHECK (priority BETWEEN 0 AND 3),
    payload     TEXT    NOT NULL,                  -- JSON: text, buttons, thread, quote, mention, kind
    blob        BLOB,                              -- a picture or a file to attach
    held        INTEGER NOT NULL DEFAULT 0 CHECK (held IN (0, 1)),  -- 1: waits until the member starts the bot
    created_at  INTEGER NOT NULL
);
CREATE INDEX outbound_held ON outbound(channel, chat_id) WHERE held = 1;

CREATE TABLE checkin_boards (
    channel     TEXT    NOT NULL,
    chat_id     TEXT    NOT NULL,
    day         TEXT    NOT NULL,                  -- business day 'YYYY-MM-DD'
    message_id  TEXT,                              -- the board's message once posted
    PRIMARY KEY (channel, chat_id, day)
);

ALTER TABLE checkins ADD COLUMN chat TEXT;         -- 'channel:chat id' of the group it was made in
CREATE INDEX checkins_chat_day ON checkins(chat, day, created_at);
