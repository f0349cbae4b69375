-- Importing from a chat and claiming an imported record.
--
-- A staff member's import file waits here between its dry run and their confirmation: one per staff member (a
-- second file replaces it, and with it its id, so the first file's Confirm button no longer works), until it
-- expires. Confirming deletes the row in the importing transaction, so confirming twice imports once.
CREATE TABLE customer_uploads (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    channel     TEXT    NOT NULL,                  -- the staff member who sent the file, as that channel knows them
    external_id TEXT    NOT NULL,
    file_name   TEXT    NOT NULL,
    content     BLOB    NOT NULL,                  -- the file as sent (read again on confirmation)
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    CONSTRAINT one_per_staff UNIQUE (channel, external_id),
    CONSTRAINT expires_after_creation CHECK (expires_at > created_at)
);

-- Claim codes staff show for one imported customer's phone: the customer sends 绑定手机 <phone> <code> to make
-- their account that customer. One live code per phone; it works once. Wrong codes are counted in
-- bind_failures (scopes 'claim:member:<id>' and 'claim:all').
CREATE TABLE claim_codes (
    phone      TEXT    PRIMARY KEY REFERENCES customer_profiles(phone),
    code       TEXT    NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    CONSTRAINT expires_after_creation CHECK (expires_at > created_at)
);
