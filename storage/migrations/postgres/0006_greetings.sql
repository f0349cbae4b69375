-- Holiday and birthday greetings: each holiday occurrence is planned once, staff can silence a holiday,
-- and each member's birthday is greeted once per day.

CREATE TABLE greeting_plans (
    holiday_id      TEXT    NOT NULL,                -- e.g. 'mid_autumn', or a custom day's id
    day             TEXT    NOT NULL,                -- local date of the occurrence 'YYYY-MM-DD'
    announcement_id BIGINT REFERENCES announcements(id),   -- the planned greeting (kind 'greeting')
    planned_at      BIGINT NOT NULL,
    PRIMARY KEY (holiday_id, day)                    -- one greeting per holiday occurrence, however often planned
);
CREATE UNIQUE INDEX greeting_plans_announcement ON greeting_plans(announcement_id);

CREATE TABLE greeting_silenced (
    holiday_id  TEXT    PRIMARY KEY,                 -- silenced with /greetings off, until /greetings on
    silenced_by BIGINT REFERENCES members(id),
    silenced_at BIGINT NOT NULL
);

CREATE TABLE birthday_greetings (
    member_id       BIGINT NOT NULL REFERENCES members(id),
    day             TEXT    NOT NULL,                -- local date greeted 'YYYY-MM-DD'
    via             TEXT    NOT NULL DEFAULT 'none' CHECK (via IN ('private', 'group', 'none')),
    gift            BIGINT NOT NULL DEFAULT 0,      -- points booked with this greeting
    announcement_id BIGINT REFERENCES announcements(id),
    sent_at         BIGINT NOT NULL,
    PRIMARY KEY (member_id, day)                     -- a birthday is greeted once, whatever the restarts
);
