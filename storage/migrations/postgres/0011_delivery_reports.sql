-- Delivery reports: staff hear once of an announcement whose deliveries ended with failed or uncertain rows.

ALTER TABLE announcements ADD COLUMN outcome_reported_at BIGINT;   -- when staff were told; NULL: not yet
CREATE INDEX announcements_unreported ON announcements(id) WHERE outcome_reported_at IS NULL;

-- Announcements already finished before this migration are not reported after the fact.
UPDATE announcements SET outcome_reported_at = CAST(EXTRACT(EPOCH FROM now()) AS BIGINT)
WHERE state <> 'pending' AND NOT EXISTS (
    SELECT 1 FROM deliveries d WHERE d.announcement_id = announcements.id AND d.state IN ('pending', 'sending')
);
