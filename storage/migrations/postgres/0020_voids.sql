-- Voiding a purchase recorded by mistake (`/void purchase <id>`): the row stays, marked voided, and no longer
-- counts for statistics and segments; its points are booked back by a reversing ledger entry (reason 'void').
-- The partial indexes cover the live purchases the aggregates read (member_id, created_at), as the full
-- indexes of 0001/0007 did before.

ALTER TABLE purchases ADD COLUMN voided_at BIGINT;                 -- unix seconds; NULL: the purchase counts
ALTER TABLE purchases ADD COLUMN voided_by BIGINT REFERENCES members(id);

CREATE INDEX purchases_member_live ON purchases(member_id, created_at) WHERE voided_at IS NULL;
CREATE INDEX purchases_created_live ON purchases(created_at, member_id) WHERE voided_at IS NULL;

-- A voided purchase stays voided.
CREATE TRIGGER purchases_void_final BEFORE UPDATE OF voided_at ON purchases
    FOR EACH ROW WHEN (OLD.voided_at IS NOT NULL)
    EXECUTE FUNCTION vipbot_refuse('a voided purchase cannot change');

-- Undoing what staff posted by mistake: a poll deleted before its first answer (it stays, closed, marked), an
-- announcement recalled (its pending deliveries dropped, its group posts deleted while the platform allows).
ALTER TABLE polls ADD COLUMN deleted_at BIGINT;                    -- set by /poll delete; the poll is closed
ALTER TABLE announcements ADD COLUMN recalled_at BIGINT;           -- set by /announce recall
ALTER TABLE deliveries ADD COLUMN deleted_at BIGINT;               -- the sent message was deleted (recall)
