-- Points expiry and the yearly tier review (both off by default).
--
-- Expired points are ledger entries (reason 'expire', earned_delta 0: the balance falls, lifetime points and the
-- tier do not). The reminder before an expiry is sent once per member and expiry date: `points_expiry_reminders`
-- records it (the amount is what was due when the reminder went out).
--
-- The tier review keeps lifetime points (`members.earned`) as they are and records, per member, how many of them
-- no longer count towards the tier: `tier_standing.discount`. A member's tier points are `earned - discount`;
-- points earned after a review count in full. `tier_reviews` is the history, one row per member and review year,
-- which also makes the review idempotent.

CREATE TABLE points_expiry_reminders (
    member_id  BIGINT NOT NULL REFERENCES members(id),
    expires_on TEXT    NOT NULL,                    -- the last local day before the points expire, 'YYYY-MM-DD'
    points     BIGINT NOT NULL CHECK (points > 0),
    created_at BIGINT NOT NULL,
    PRIMARY KEY (member_id, expires_on)
);

CREATE TABLE tier_standing (
    member_id BIGINT PRIMARY KEY REFERENCES members(id),
    discount  BIGINT NOT NULL DEFAULT 0 CHECK (discount >= 0),   -- lifetime points that no longer count
    reviewed_at BIGINT NOT NULL
);

CREATE TABLE tier_reviews (
    member_id     BIGINT NOT NULL REFERENCES members(id),
    year          BIGINT NOT NULL,
    earned_window BIGINT NOT NULL,                 -- points earned in the 12 months before the review
    tier_before   TEXT    NOT NULL,
    tier_after    TEXT    NOT NULL,
    reviewed_at   BIGINT NOT NULL,
    PRIMARY KEY (member_id, year)
);

INSERT INTO announcement_kinds(kind) VALUES ('points_expiry'), ('tier_review');
