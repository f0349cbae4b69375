-- Announcement kinds and subjects. The database knows every kind (a table a feature's own migration adds its
-- kinds to; an unknown kind is refused by a foreign key), and an announcement is about at most one subject,
-- (subject_kind, subject_id), in place of one nullable column per feature. The former columns stay as
-- read-only generated columns over the subject, so each subject kind keeps its foreign key.
--
-- (PostgreSQL: the same schema as storage/migrations/0015_announcement_kinds.sql. PostgreSQL can add the
-- constraints to the table as it is, so it is altered, not rebuilt; generated columns are STORED.)

CREATE TABLE announcement_kinds (
    kind TEXT PRIMARY KEY CHECK (length(kind) > 0 AND kind !~ '[^a-z_]')
);
INSERT INTO announcement_kinds(kind) VALUES
    ('now'), ('scheduled'), ('staff'), ('promo'), ('cancel'), ('sale_early'), ('sale_start'), ('sale_expired'),
    ('groupbuy'), ('groupbuy_close'), ('groupbuy_result'), ('poll'), ('poll_native'), ('poll_close'),
    ('poll_results'), ('followup'), ('greeting'), ('birthday'), ('winback'), ('feedback'), ('points'),
    ('referral'), ('binding');

ALTER TABLE announcements
    ADD COLUMN subject_kind TEXT CHECK (subject_kind IS NULL OR length(subject_kind) > 0),   -- 'event', 'sale', ...
    ADD COLUMN subject_id   BIGINT;                                                          -- its id in its table

UPDATE announcements
   SET subject_kind = CASE WHEN event_id IS NOT NULL THEN 'event' WHEN sale_id IS NOT NULL THEN 'sale'
                           WHEN group_buy_id IS NOT NULL THEN 'group_buy' WHEN poll_id IS NOT NULL THEN 'poll'
                           WHEN member_id IS NOT NULL THEN 'member' END,
       subject_id = COALESCE(event_id, sale_id, group_buy_id, poll_id, member_id);

-- Dropping the former columns drops their foreign keys and the index announcements_event.
ALTER TABLE announcements
    DROP COLUMN event_id, DROP COLUMN sale_id, DROP COLUMN group_buy_id, DROP COLUMN poll_id, DROP COLUMN member_id;

-- read-only, for the subject kinds with a foreign key (write subject_kind and subject_id instead)
ALTER TABLE announcements
    ADD COLUMN event_id     BIGINT GENERATED ALWAYS AS (CASE WHEN subject_kind = 'event' THEN subject_id END) STORED
                            REFERENCES events(id),
    ADD COLUMN sale_id      BIGINT GENERATED ALWAYS AS (CASE WHEN subject_kind = 'sale' THEN subject_id END) STORED
                            REFERENCES sales(id),
    ADD COLUMN group_buy_id BIGINT GENERATED ALWAYS AS (CASE WHEN subject_kind = 'group_buy' THEN subject_id END)
                            STORED REFERENCES group_buys(id),
    ADD COLUMN poll_id      BIGINT GENERATED ALWAYS AS (CASE WHEN subject_kind = 'poll' THEN subject_id END) STORED
                            REFERENCES polls(id),
    ADD COLUMN member_id    BIGINT GENERATED ALWAYS AS (CASE WHEN subject_kind = 'member' THEN subject_id END) STORED
                            REFERENCES members(id),
    ADD CHECK ((subject_kind IS NULL) = (subject_id IS NULL)),
    ADD FOREIGN KEY (kind) REFERENCES announcement_kinds(kind);

CREATE INDEX announcements_subject ON announcements(subject_kind, subject_id, state);
