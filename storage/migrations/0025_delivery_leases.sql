-- Leases on the deliveries being sent: the process that claimed a row (`claimed_by`, e.g. 'vipbot 1234@host')
-- and until when its claim holds (`lease_until`, unix seconds). Only the claimant settles the row; a row left
-- 'sending' by a process that died is marked uncertain once its lease has run out, never while a live
-- process may still be sending it (during a leader change two processes may drain for a moment).
ALTER TABLE deliveries ADD COLUMN claimed_by TEXT;
ALTER TABLE deliveries ADD COLUMN lease_until REAL;
