-- Idempotency keys of scheduled jobs: one row per job and period ('weekly_report', '2026-03-10'), inserted in the
-- transaction that queues the job's messages (INSERT ... ON CONFLICT DO NOTHING). A second run for the same period
-- (two bot processes for a moment, a restart at the scheduled minute) finds the key taken and sends nothing.
-- Jobs whose every message already has its own key (birthdays, expiry reminders, tier reviews, surveys, greetings)
-- or that settle rows with a conditional UPDATE (holds, escalations, delivery reports) need no row here.

CREATE TABLE job_runs (
    job     TEXT    NOT NULL CHECK (length(job) > 0),
    period  TEXT    NOT NULL CHECK (length(period) > 0),   -- what the run covers, e.g. the last day of the week
    ran_at  BIGINT NOT NULL,                              -- unix seconds
    PRIMARY KEY (job, period)
);
