"""Idempotency keys of scheduled jobs: a job claims its period (the week of a weekly report) in the transaction that
queues its messages, so that a second run for the same period, by another process or after a restart, sends nothing.
"""

from __future__ import annotations

from storage.db.sql import Repo, fetch_one, has_row


class JobRunRepo(Repo):
    async def claim(self, job: str, period: str, now: int) -> bool:
        """Take the right to run `job` for `period`; False if a run for it took it before (the key decides)."""
        return await has_row(
            self._conn,
            "INSERT INTO job_runs(job, period, ran_at) VALUES (?, ?, ?) ON CONFLICT(job, period) DO NOTHING"
            " RETURNING job",
            (job, period, now),
        )

    async def ran_at(self, job: str, period: str) -> int | None:
        """When `job` ran for `period`, or None if it has not."""
        row = await fetch_one(self._conn, "SELECT ran_at FROM job_runs WHERE job = ? AND period = ?", (job, period))
        return int(row[0]) if row else None
