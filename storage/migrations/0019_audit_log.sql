-- Who did what: one row per staff command (every command that needs a staff role), written by the dispatcher
-- in the transaction of the command itself, so a booked action always has its row and a rolled-back one none.
-- Refused attempts (no role, or too low a role) are rows too. Actors from the command line (`vipbot import
-- members --confirm`) have no member: actor_member_id is NULL and actor_channel 'cli'.

CREATE TABLE audit_log (
    id                INTEGER PRIMARY KEY,
    at                INTEGER NOT NULL,                 -- unix seconds
    actor_member_id   INTEGER,                          -- the staff member (NULL: the command line)
    actor_channel     TEXT    NOT NULL,                 -- telegram, wechat, console, cli
    actor_external_id TEXT    NOT NULL,                 -- their id on that channel (the system user for cli)
    role              TEXT    CHECK (role IN ('cashier', 'manager', 'owner')),  -- NULL: no staff role
    command           TEXT    NOT NULL,                 -- without the slash
    subcommand        TEXT    NOT NULL DEFAULT '',
    args              TEXT    NOT NULL DEFAULT '',      -- the argument text, trimmed (never a secret)
    target_member_id  INTEGER,                          -- the member acted on, when the command names one
    chat_id           TEXT    NOT NULL DEFAULT '',      -- where it was sent ('' for the command line)
    in_group          INTEGER NOT NULL DEFAULT 0 CHECK (in_group IN (0, 1)),
    outcome           TEXT    NOT NULL CHECK (outcome IN ('done', 'undone', 'failed', 'refused'))
    -- done: run and booked; undone: the command answered without booking (a usage, a refusal of its own);
    -- failed: the handler crashed (nothing booked); refused: the sender lacked the role.
);
CREATE INDEX audit_log_at ON audit_log(at);
CREATE INDEX audit_log_target ON audit_log(target_member_id, id) WHERE target_member_id IS NOT NULL;
CREATE INDEX audit_log_actor ON audit_log(actor_member_id, id) WHERE actor_member_id IS NOT NULL;

-- What happened stays as it was written; only the personal parts (the argument text, the channel id) may be
-- blanked when a member's personal data is erased.
CREATE TRIGGER audit_log_as_written BEFORE UPDATE OF
    at, actor_member_id, actor_channel, role, command, subcommand, target_member_id, chat_id, in_group, outcome
ON audit_log
BEGIN
    SELECT RAISE(ABORT, 'an audit row cannot change');
END;
