-- The feedback desk (投诉建议): tickets opened by members, staff replies, escalation and the member's rating.

CREATE TABLE tickets (
    id           INTEGER PRIMARY KEY,
    member_id    INTEGER NOT NULL REFERENCES members(id),
    kind         TEXT    NOT NULL CHECK (kind IN ('complaint', 'suggestion', 'feedback')),
    channel      TEXT    NOT NULL,                  -- where it was opened: replies fall back to this chat
    chat_id      TEXT    NOT NULL,
    is_group     INTEGER NOT NULL DEFAULT 0 CHECK (is_group IN (0, 1)),
    state        TEXT    NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'answered', 'closed')),
    created_at   INTEGER NOT NULL,                  -- unix seconds, UTC
    answer_by    INTEGER NOT NULL,                  -- the answer time promised to the member when opened
    answered_at  INTEGER,                           -- the first staff reply
    closed_at    INTEGER,
    closed_by    INTEGER REFERENCES members(id),
    escalated_at INTEGER,                           -- the one reminder to staff about an unanswered ticket
    rating       INTEGER CHECK (rating BETWEEN 1 AND 5),
    rated_at     INTEGER,
    CONSTRAINT answered_has_time CHECK (state <> 'answered' OR answered_at IS NOT NULL),
    CONSTRAINT open_is_unanswered CHECK (state <> 'open' OR (answered_at IS NULL AND closed_at IS NULL)),
    CONSTRAINT closed_has_time CHECK ((state = 'closed') = (closed_at IS NOT NULL)),
    CONSTRAINT rated_when_closed CHECK (rating IS NULL OR (state = 'closed' AND rated_at IS NOT NULL)),
    CONSTRAINT promise_after_opening CHECK (answer_by >= created_at)
);
CREATE INDEX tickets_state ON tickets(state, created_at);
CREATE INDEX tickets_member ON tickets(member_id, created_at);

-- A rating is given once: it can never be changed or withdrawn afterwards.
CREATE TRIGGER tickets_rating_once BEFORE UPDATE OF rating ON tickets
WHEN OLD.rating IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a ticket is rated once');
END;

-- A closed ticket stays closed.
CREATE TRIGGER tickets_closed_final BEFORE UPDATE OF state ON tickets
WHEN OLD.state = 'closed' AND NEW.state <> 'closed'
BEGIN
    SELECT RAISE(ABORT, 'a closed ticket cannot be reopened');
END;

CREATE TABLE ticket_messages (
    id         INTEGER PRIMARY KEY,
    ticket_id  INTEGER NOT NULL REFERENCES tickets(id),
    author_id  INTEGER NOT NULL REFERENCES members(id),
    role       TEXT    NOT NULL CHECK (role IN ('member', 'staff')),
    body       TEXT    NOT NULL CHECK (length(body) > 0),
    delivered  TEXT    CHECK (delivered IN ('private', 'chat', 'none')),   -- how a staff reply reached the member
    created_at INTEGER NOT NULL
);
CREATE INDEX ticket_messages_ticket ON ticket_messages(ticket_id, id);
