-- WeChat with several bot processes behind one address (PostgreSQL), each shared through the database.
--
-- wechat_answers: the answer to each pushed message, keyed like the inbox (sender and MsgId, or sender and
-- CreateTime for events), written in the transaction that marks the message done in the inbox. WeChat retries a
-- message it got no answer to within 5 s; a retry that lands on another process finds the message done and
-- answers with this row, rendered text and numbered choices as the first attempt had them. Only one answer of a
-- message may go out through the customer-service API, and none once a retry was answered in the HTTP response:
-- late_at and passive_at are those two claims, each a conditional UPDATE. Rows are pruned after minutes (WeChat
-- retries within about 15 seconds). A process alone on its database (SQLite) keeps all this in memory instead.
--
-- wechat_session: wechatpy's session storage (the access token), written by the leading process only;
-- expires_at = 0 marks a token WeChat refused (40001/42001), which the leader then replaces.

CREATE TABLE wechat_answers (
    key         TEXT    NOT NULL PRIMARY KEY,          -- WeChatMessage.key, the inbox's key of the message
    answer      TEXT    NOT NULL,                      -- JSON: {"text": rendered text, "choices": [[label, data]]}
    answered_at BIGINT NOT NULL,                      -- unix seconds
    late_at     BIGINT,                                -- when the customer-service delivery was claimed
    passive_at  BIGINT                                 -- when a retry was answered in its HTTP response
);

CREATE INDEX wechat_answers_age ON wechat_answers(answered_at);

CREATE TABLE wechat_session (
    key        TEXT    NOT NULL PRIMARY KEY,           -- wechatpy's key, e.g. '<appid>_access_token'
    value      TEXT    NOT NULL,
    expires_at BIGINT NOT NULL                         -- unix seconds; 0: refused by WeChat, to be replaced
);
