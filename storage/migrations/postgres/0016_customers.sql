-- Customers brought in from the shop's own spreadsheet (`vipbot import members`): each imported row is a member
-- with a profile keyed by its mainland mobile number. The profile keeps what the last imported file said
-- (balance and lifetime points), so a later file books only the difference as ledger entries (reason 'import'),
-- and the contact hints that cannot be identities yet (a Telegram username is not a Telegram user id).

CREATE TABLE customer_profiles (
    member_id         BIGINT PRIMARY KEY REFERENCES members(id),
    phone             TEXT    NOT NULL UNIQUE,          -- 11 digits, no +86
    note              TEXT    NOT NULL DEFAULT '',
    telegram_username TEXT,                             -- a hint for the claim flow: lower-case, without '@'
    wechat_openid     TEXT,                             -- also an identity row (channel 'wechat') when imported
    imported_balance  BIGINT NOT NULL DEFAULT 0,       -- opening points as the last imported file said
    imported_earned   BIGINT NOT NULL DEFAULT 0,       -- lifetime points as the last imported file said
    revision          BIGINT NOT NULL DEFAULT 1,       -- imports that changed this row: part of the idem_key
    imported_at       BIGINT,                          -- first import (unix seconds); NULL: not imported
    updated_at        BIGINT NOT NULL
);
CREATE INDEX customer_profiles_telegram ON customer_profiles(telegram_username) WHERE telegram_username IS NOT NULL;

-- An import numbers its new members itself (after MAX(id), inside its transaction), which does not move the
-- identity's sequence: this statement trigger moves it past the highest id written, never back, so the next
-- member who registers gets a fresh id.
CREATE FUNCTION members_id_follows() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM setval(pg_get_serial_sequence('members', 'id'), m) FROM (SELECT MAX(id) AS m FROM inserted) x
   WHERE m IS NOT NULL
     AND m > (SELECT CASE WHEN is_called THEN last_value ELSE last_value - 1 END FROM members_id_seq);
  RETURN NULL;
END $$;
CREATE TRIGGER members_id_follows AFTER INSERT ON members REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION members_id_follows();
