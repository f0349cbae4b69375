-- WeChat's plain signature covers token, timestamp and nonce, not the body: each (timestamp, nonce) is bound
-- to the digest of the first message seen with it, so a replayed signed query cannot carry another body.
-- A row is needed only while its timestamp is still accepted (keep_until); the prune removes the rest.

CREATE TABLE wechat_nonces (
    timestamp  TEXT    NOT NULL,                   -- as signed (the query's digits)
    nonce      TEXT    NOT NULL,
    digest     TEXT    NOT NULL,                   -- SHA-256 of the message XML first seen with them
    keep_until BIGINT NOT NULL,                   -- unix seconds after which the timestamp is refused anyway
    PRIMARY KEY (timestamp, nonce)
);

CREATE INDEX wechat_nonces_expiry ON wechat_nonces(keep_until);
