-- Members-only offers: flash sales with claims, group buys, the points rewards shop; live group posts.

CREATE TABLE sales (
    id           INTEGER PRIMARY KEY,
    item         TEXT    NOT NULL CHECK (length(item) > 0),
    price_fen    INTEGER NOT NULL CHECK (price_fen >= 0),
    stock        INTEGER NOT NULL CHECK (stock > 0),
    sold         INTEGER NOT NULL DEFAULT 0,
    starts_at    INTEGER NOT NULL,
    ends_at      INTEGER,                            -- NULL: until sold out
    per_member   INTEGER NOT NULL DEFAULT 1 CHECK (per_member >= 1),
    min_tier     TEXT,                               -- tier id; NULL: every member
    hold_minutes INTEGER CHECK (hold_minutes IS NULL OR hold_minutes > 0),
    state        TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'cancelled')),
    forced       INTEGER NOT NULL DEFAULT 0,
    created_by   INTEGER REFERENCES members(id),
    created_at   INTEGER NOT NULL,
    CONSTRAINT no_oversell CHECK (sold >= 0 AND sold <= stock)
);

CREATE TABLE sale_claims (
    id          INTEGER PRIMARY KEY,
    sale_id     INTEGER NOT NULL REFERENCES sales(id),
    member_id   INTEGER NOT NULL REFERENCES members(id),
    unit        INTEGER NOT NULL CHECK (unit >= 1),  -- the member's 1st, 2nd, ... unit of this sale
    code        TEXT    NOT NULL UNIQUE,
    state       TEXT    NOT NULL DEFAULT 'held' CHECK (state IN ('held', 'paid', 'released')),
    claimed_at  INTEGER NOT NULL,
    settled_at  INTEGER
);
-- One live claim per (sale, member, unit): a released unit may be claimed again.
CREATE UNIQUE INDEX sale_claims_unit ON sale_claims(sale_id, member_id, unit) WHERE state <> 'released';
CREATE INDEX sale_claims_held ON sale_claims(state, claimed_at);

CREATE TABLE group_buys (
    id              INTEGER PRIMARY KEY,
    item            TEXT    NOT NULL CHECK (length(item) > 0),
    price_fen       INTEGER NOT NULL CHECK (price_fen >= 0),
    group_price_fen INTEGER NOT NULL CHECK (group_price_fen >= 0),
    min_members     INTEGER NOT NULL CHECK (min_members >= 2),
    deadline_at     INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'succeeded', 'failed', 'cancelled')),
    created_by      INTEGER REFERENCES members(id),
    created_at      INTEGER NOT NULL
);

CREATE TABLE group_buy_members (
    group_buy_id INTEGER NOT NULL REFERENCES group_buys(id),
    member_id    INTEGER NOT NULL REFERENCES members(id),
    deposit_fen  INTEGER NOT NULL DEFAULT 0,         -- 0 for tiers that join without a deposit
    joined_at    INTEGER NOT NULL,
    code         TEXT UNIQUE,                        -- given when the group buy succeeds
    PRIMARY KEY (group_buy_id, member_id)
);

CREATE TABLE rewards (
    id        INTEGER PRIMARY KEY,
    name      TEXT    NOT NULL CHECK (length(name) > 0),
    cost      INTEGER NOT NULL CHECK (cost > 0),
    stock     INTEGER CHECK (stock IS NULL OR stock >= 0),   -- NULL: unlimited
    redeemed  INTEGER NOT NULL DEFAULT 0,
    min_tier  TEXT,
    state     TEXT    NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'removed')),
    created_at INTEGER NOT NULL,
    CONSTRAINT no_overdraw_stock CHECK (stock IS NULL OR redeemed <= stock)
);

CREATE TABLE redemptions (
    id         INTEGER PRIMARY KEY,
    reward_id  INTEGER NOT NULL REFERENCES rewards(id),
    member_id  INTEGER NOT NULL REFERENCES members(id),
    code       TEXT    NOT NULL UNIQUE,
    cost       INTEGER NOT NULL,
    state      TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'handed')),
    created_at INTEGER NOT NULL,
    handed_at  INTEGER,
    handed_by  INTEGER REFERENCES members(id)
);

ALTER TABLE announcements ADD COLUMN sale_id INTEGER REFERENCES sales(id);
ALTER TABLE announcements ADD COLUMN group_buy_id INTEGER REFERENCES group_buys(id);
ALTER TABLE deliveries ADD COLUMN body TEXT;          -- a personal text instead of the announcement's
ALTER TABLE deliveries ADD COLUMN message_id TEXT;    -- the platform's id of the sent message (for edits)
