"""Handing a backlog to the sender: a restart resumes thousands of stored replies at once, often into one group.

Times `Sender.submit` for ``--jobs`` (3,000) coalescing replies into one group, and the same number into as many
private chats, with a transport that answers at once (nothing is sent: the sender's loop is not started). The
sender decides a chat's next turn in its loop, once for however many jobs came in; deciding it at every submit
looked at every queued job each time (quadratic: 68 s for 3,000 into one group on this machine).

Run from the repository root::

    .venv/bin/python bench/sender_backlog.py [--jobs 3000]
"""

from __future__ import annotations

import argparse
import asyncio
import time

from bot.delivery.sender import Delivered, Job, Outcome, Priority, ScopeLimit, Sender


class _Transport:
    def limit(self, scope: str) -> ScopeLimit:
        return ScopeLimit(18, 60.0, 1.5) if scope.startswith("-") else ScopeLimit(1, 1.1, 1.1)

    async def deliver(self, jobs: list[Job]) -> Delivered:
        return Delivered(Outcome.SENT)


async def run(jobs: int) -> None:
    for label, group in (("one group", True), ("private chats", False)):
        sender = Sender(_Transport(), per_second=25)
        started = time.perf_counter()
        for n in range(jobs):
            sender.submit(Job("-100" if group else str(n), Priority.GROUP, {"text": f"reply {n}"}, coalesce=group))
        submitted = time.perf_counter() - started
        scope = sender._scopes["-100" if group else "0"]  # a benchmark looks inside
        started = time.perf_counter()
        scope.head(scope.ready(time.monotonic() + 1.0))
        turn = time.perf_counter() - started
        print(f"{jobs} jobs into {label}: submit {1000 * submitted:.1f} ms, deciding one turn {1000 * turn:.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=3000)
    asyncio.run(run(parser.parse_args().jobs))


if __name__ == "__main__":
    main()
