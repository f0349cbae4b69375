-- Members' own data (/me, /forget): a member may ask for their personal data to be erased; staff confirm it.
-- The request is a row (it survives a restart, and the member may withdraw it until staff confirm); an erased
-- member keeps its row and its ledger under a placeholder name, so every balance still equals its ledger.

ALTER TABLE members ADD COLUMN erased_at INTEGER;   -- personal data erased (unix seconds); NULL: not erased

CREATE TABLE erasure_requests (
    id         INTEGER PRIMARY KEY,
    member_id  INTEGER NOT NULL REFERENCES members(id),
    state      TEXT    NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'withdrawn', 'erased')),
    asked_at   INTEGER NOT NULL,                   -- unix seconds, when the member confirmed their request
    settled_at INTEGER,                            -- withdrawn by the member or erased on staff's word
    settled_by INTEGER REFERENCES members(id),     -- the staff member who confirmed the erasure
    CONSTRAINT settled_has_time CHECK (state = 'pending' OR settled_at IS NOT NULL),
    CONSTRAINT erased_has_staff CHECK (state <> 'erased' OR settled_by IS NOT NULL)
);
-- One open request per member.
CREATE UNIQUE INDEX erasure_requests_open ON erasure_requests(member_id) WHERE state = 'pending';

-- A settled request stays settled.
CREATE TRIGGER erasure_requests_settled_final BEFORE UPDATE OF state ON erasure_requests
WHEN OLD.state <> 'pending'
BEGIN
    SELECT RAISE(ABORT, 'a settled erasure request cannot change');
END;
