-- Referrals (老带新): each member's stable invite code, and who brought whom with the reward's outcome.

CREATE TABLE referral_codes (
    member_id  INTEGER PRIMARY KEY REFERENCES members(id),   -- one stable code per member
    code       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL
);

CREATE TABLE referrals (
    id              INTEGER PRIMARY KEY,
    referrer_id     INTEGER NOT NULL REFERENCES members(id),
    referred_id     INTEGER NOT NULL UNIQUE REFERENCES members(id),   -- a member is brought in once
    code            TEXT    NOT NULL,                 -- the code used (a code never changes owner)
    channel         TEXT    NOT NULL,                 -- where the new member arrived
    state           TEXT    NOT NULL DEFAULT 'joined' CHECK (state IN ('joined', 'rewarded', 'capped')),
    created_at      INTEGER NOT NULL,                 -- unix seconds, UTC
    purchase_id     INTEGER REFERENCES purchases(id), -- the referred member's first purchase
    rewarded_at     INTEGER,
    reward_month    TEXT,                             -- 'YYYY-MM' of that purchase in the shop's zone (the cap)
    referrer_points INTEGER NOT NULL DEFAULT 0 CHECK (referrer_points >= 0),
    referred_points INTEGER NOT NULL DEFAULT 0 CHECK (referred_points >= 0),
    outcome         TEXT    NOT NULL DEFAULT '',      -- why the referrer got nothing, e.g. the monthly cap
    CONSTRAINT not_self CHECK (referrer_id <> referred_id),
    CONSTRAINT settled_has_purchase CHECK (
        state = 'joined' OR (purchase_id IS NOT NULL AND rewarded_at IS NOT NULL AND reward_month IS NOT NULL)
    ),
    CONSTRAINT capped_earns_referrer_nothing CHECK (state <> 'capped' OR referrer_points = 0)
);
CREATE INDEX referrals_referrer ON referrals(referrer_id, state, reward_month);

-- A settled referral stays settled: its reward was booked once and must never be booked again.
CREATE TRIGGER referrals_settled_final BEFORE UPDATE OF state ON referrals
WHEN OLD.state <> 'joined'
BEGIN
    SELECT RAISE(ABORT, 'a settled referral cannot change');
END;
