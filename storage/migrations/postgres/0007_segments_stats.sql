-- Segments (RFM) and staff statistics: indexes for the time-window figures, and the win-back memory.

-- The per-member aggregate of segments reads purchases_member (member_id, created_at) alone. These serve
-- the "last 7 days" figures of /stats and /report as covering indexes: a range of the index answers the
-- query without a lookup per row (with 1M purchases and ledger entries that is 5-10 times faster).
CREATE INDEX purchases_created ON purchases(created_at, member_id);     -- active members: who purchased
CREATE INDEX checkins_day_member ON checkins(day, member_id);           -- active members: who checked in
CREATE INDEX ledger_created ON ledger(created_at, reason, delta);       -- points issued and redeemed
CREATE INDEX members_joined ON members(joined_at);                      -- new members
CREATE INDEX poll_answers_answered ON poll_answers(answered_at);        -- satisfaction, last 90 days

-- Each buyer's segment as last seen by the win-back job. An entry is (segment, last purchase): a change
-- of segment, or a new purchase, starts a new entry and clears cared_at, so one care message per entry.
CREATE TABLE member_segments (
    member_id        BIGINT PRIMARY KEY REFERENCES members(id),
    segment          TEXT    NOT NULL
                     CHECK (segment IN ('new', 'active', 'cooling', 'dormant_high', 'dormant_low', 'lost')),
    last_purchase_at BIGINT NOT NULL,              -- the member's last purchase when this entry began
    entered_at       BIGINT NOT NULL,              -- when the job first saw this entry
    cared_at         BIGINT                        -- when this entry's care message was queued; NULL: not yet
);
CREATE INDEX member_segments_uncared ON member_segments(segment) WHERE cared_at IS NULL;
