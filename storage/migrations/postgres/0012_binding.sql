-- Trust in linked accounts and referrals: binding codes name the identity that asked for one (a code links
-- another channel only), wrong codes are counted per member and overall, members record whether they were
-- ever seen in a VIP group and whether /unlink split them off (both bar a later invite), and a referral
-- between two members who become one is voided.

DROP TABLE bind_codes;
CREATE TABLE bind_codes (
    code        TEXT    PRIMARY KEY,               -- as members see it, e.g. 'B-7KQ2XM3P'
    member_id   BIGINT NOT NULL UNIQUE REFERENCES members(id),   -- one live code per member
    channel     TEXT    NOT NULL,                  -- the identity that asked for it, in a private chat:
    external_id TEXT    NOT NULL,                  -- the code links an identity on another channel only
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    CONSTRAINT expires_after_creation CHECK (expires_at > created_at)
);

-- Wrong binding codes in the current window, per member ('member:<id>') and for everyone ('all').
CREATE TABLE bind_failures (
    scope        TEXT    PRIMARY KEY,
    window_start BIGINT NOT NULL,
    failures     BIGINT NOT NULL DEFAULT 0 CHECK (failures >= 0)
);

ALTER TABLE members ADD COLUMN seen_in_group_at BIGINT;   -- first message in a VIP group (unix seconds)
ALTER TABLE members ADD COLUMN split_from BIGINT REFERENCES members(id);   -- /unlink made it from that member
CREATE INDEX members_merged_into ON members(merged_into) WHERE merged_into IS NOT NULL;   -- who was linked in
-- Members from before this column: everyone outside WeChat (which has no groups) counts as seen in a group,
-- which keeps them from being invited later, as before.
UPDATE members SET seen_in_group_at = joined_at
 WHERE EXISTS (SELECT 1 FROM identities i WHERE i.member_id = members.id AND i.channel <> 'wechat');

ALTER TABLE referrals ADD COLUMN voided_at BIGINT;        -- set when a merge made both sides one member
