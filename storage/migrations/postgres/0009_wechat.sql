-- WeChat: the customer-service window per identity, numbered choices standing in for buttons, binding codes
-- that link two identities to one member, and members merged into another.

ALTER TABLE identities ADD COLUMN last_inbound_at BIGINT;          -- the member's last message (unix seconds)
ALTER TABLE identities ADD COLUMN window_sent BIGINT NOT NULL DEFAULT 0;   -- pushes sent since then
ALTER TABLE identities ADD COLUMN unsubscribed_at BIGINT;
ALTER TABLE members ADD COLUMN merged_into BIGINT REFERENCES members(id);

CREATE TABLE pending_choices (
    channel     TEXT    NOT NULL,
    external_id TEXT    NOT NULL,
    buttons     TEXT    NOT NULL,                   -- JSON [[label, data], ...] the numbers stand for
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (channel, external_id)
);

CREATE TABLE bind_codes (
    code       TEXT    PRIMARY KEY,
    member_id  BIGINT NOT NULL REFERENCES members(id),
    expires_at BIGINT NOT NULL
);
