-- Members, their channel identities, the points ledger, check-ins, purchases and seen updates.

CREATE TABLE members (
    id              INTEGER PRIMARY KEY,
    display_name    TEXT    NOT NULL DEFAULT '',
    joined_at       INTEGER NOT NULL,               -- unix seconds, UTC
    last_seen_at    INTEGER NOT NULL,
    birthday        TEXT,                           -- 'MM-DD'
    birthday_set_at INTEGER,
    balance         INTEGER NOT NULL DEFAULT 0,     -- cache of SUM(ledger.delta), kept by a trigger
    earned          INTEGER NOT NULL DEFAULT 0,     -- lifetime earned points, decides the tier
    CONSTRAINT balance_nonnegative CHECK (balance >= 0),
    CONSTRAINT earned_nonnegative CHECK (earned >= 0)
);

CREATE TABLE identities (
    channel      TEXT    NOT NULL,                  -- 'telegram', 'wechat', 'console'
    external_id  TEXT    NOT NULL,
    member_id    INTEGER NOT NULL REFERENCES members(id),
    username     TEXT,                              -- lower-case, without '@'
    display_name TEXT    NOT NULL DEFAULT '',
    can_message  INTEGER NOT NULL DEFAULT 0,        -- 1 once the user has opened a private chat
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (channel, external_id)
);
CREATE INDEX identities_member ON identities(member_id);
CREATE INDEX identities_username ON identities(channel, username);

CREATE TABLE ledger (
    id           INTEGER PRIMARY KEY,
    member_id    INTEGER NOT NULL REFERENCES members(id),
    delta        INTEGER NOT NULL CHECK (delta <> 0),
    earned_delta INTEGER NOT NULL DEFAULT 0,        -- change to lifetime earned points
    reason       TEXT    NOT NULL,                  -- 'checkin', 'award', 'deduct', 'purchase', ...
    note         TEXT    NOT NULL DEFAULT '',
    ref          TEXT,                              -- what caused it (check-in day, purchase id, ...)
    idem_key     TEXT    NOT NULL UNIQUE,           -- the same cause can never be booked twice
    actor_id     INTEGER REFERENCES members(id),    -- staff member who booked it, if any
    created_at   INTEGER NOT NULL
);
CREATE INDEX ledger_member ON ledger(member_id, id);

-- The balance is derived from the ledger: every insert moves the cached totals, and the CHECK on
-- members rejects (and so rolls back) an entry that would take the balance below zero.
CREATE TRIGGER ledger_apply AFTER INSERT ON ledger
BEGIN
    UPDATE members
       SET balance = balance + NEW.delta,
           earned  = MAX(0, earned + NEW.earned_delta)
     WHERE id = NEW.member_id;
END;

CREATE TRIGGER ledger_append_only_update BEFORE UPDATE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;

CREATE TRIGGER ledger_append_only_delete BEFORE DELETE ON ledger
BEGIN
    SELECT RAISE(ABORT, 'ledger is append-only');
END;

CREATE TABLE checkins (
    member_id  INTEGER NOT NULL REFERENCES members(id),
    day        TEXT    NOT NULL,                    -- business day 'YYYY-MM-DD' in the shop's zone
    streak     INTEGER NOT NULL CHECK (streak >= 1),
    points     INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (member_id, day)
);
CREATE INDEX checkins_day ON checkins(day);

CREATE TABLE purchases (
    id          INTEGER PRIMARY KEY,
    member_id   INTEGER NOT NULL REFERENCES members(id),
    amount_fen  INTEGER NOT NULL CHECK (amount_fen > 0),   -- amount in fen (1/100 yuan)
    note        TEXT    NOT NULL DEFAULT '',
    recorded_by INTEGER REFERENCES members(id),
    idem_key    TEXT    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
CREATE INDEX purchases_member ON purchases(member_id, created_at);

CREATE TABLE seen_updates (
    key     TEXT    PRIMARY KEY,                    -- e.g. 'telegram:update:42'
    seen_at INTEGER NOT NULL
);
CREATE INDEX seen_updates_age ON seen_updates(seen_at);
