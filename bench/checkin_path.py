"""The check-in use case on SQLite, in one process: CPU per check-in of the dispatcher's hot path, without a
channel, a fake server or polling around it.

Project requirement (issue #17): "The SQLite hot path must not get slower: measure the check-in benchmark before
and after." The whole-pipeline benchmark (``bench/checkin_throughput.py``) runs three processes that share
this machine's 2 cores, and its figure moved by more between two runs of one build than between two builds.
This one takes the pipeline's middle alone: ``Runtime.open`` on a fresh SQLite file (the real migrations,
settings and features), then N distinct members each send ``/checkin`` in a private chat, one after the other,
through ``Dispatcher.handle_update`` with a queued reply (one transaction: inbox claim, first contact of the
member, check-in, ledger entry, the reply row in ``outbound``). Nothing else runs: the runtime is not started
(no outbox drain, no scheduler), so every CPU cycle of the process is the use case's own.

Figures per round: CPU seconds of the whole process (its threads included: aiosqlite's connection thread runs
the statements) and wall seconds, per check-in, for N members after ``--warm`` first ones (a warm-up, not
counted). The median of ``--rounds`` rounds is printed. Two builds are compared by running this same file in
each tree, alternately (``--tree`` names another checkout: the file imports that tree's code)::

    .venv/bin/python bench/checkin_path.py [--members 2000] [--rounds 5] [--tree /path/to/other/checkout]

Under ``valgrind --tool=callgrind`` the count of instructions is the repeatable figure: it does not depend
on what else the machine runs. A run with ``--baseline`` does everything but the counted check-ins, so the
difference of two counts (``--members 1000 --rounds 1 --returning``, with and without ``--baseline``) is
1,000 check-ins of members who wrote before, nothing else.

Correctness (exit 1 otherwise): every member got the reply "Checked in", and the file holds exactly one check-in,
one ledger entry and one queued reply per member.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any


def load_tree(tree: Path) -> None:
    """Import the project from `tree` (this checkout unless told otherwise)."""
    sys.path.insert(0, str(tree.resolve()))


def shape(sql: str) -> str:
    """A statement as run (SQLite's trace has the values in it) with its values as ``?``: one line per kind."""
    sql = re.sub(r"'(?:[^']|'')*'", "?", " ".join(sql.split()))
    return re.sub(r"\b(sp)?\d+\b", lambda m: (m.group(1) or "") + "?", sql)[:400]


class Port:
    """The channel side: nobody is staff, every chat is the shop's, everyone is a group member."""

    bot_username = "vipbot"

    def is_vip_chat(self, msg: Any) -> bool:
        return True

    async def role_of(self, msg: Any) -> None:
        return None

    async def is_group_member(self, msg: Any) -> bool:
        return True

    async def fetch_document(self, document: Any) -> bytes:
        raise NotImplementedError


async def one_round(
    members: int,
    warm: int,
    workdir: Path,
    statements: Counter[str] | None = None,
    returning: bool = False,
    baseline: bool = False,
) -> tuple[float, float, list[str]]:
    """CPU and wall seconds per check-in for `members` check-ins after `warm` ones; the problems found. With
    `statements`, the SQL the writer connection ran for the counted check-ins is counted there. `returning`:
    every member has written to the bot before (``/points``, not counted), as on a shop's usual morning; else
    each check-in is also the member's first contact. `baseline`: everything but the counted check-ins (for a
    count of instructions, the difference to a full run is theirs alone)."""
    from bot.app.config import Settings
    from bot.app.runtime import Runtime
    from handlers.core.messages import Identity, Inbound

    path = workdir / f"path-{time.monotonic_ns()}.db"
    settings = Settings(locale="en", storage={"path": str(path)}, greetings={"enabled": False})
    runtime = await Runtime.open(settings)
    port = Port()
    problems: list[str] = []

    async def sink(repos: Any, member_id: int | None, replies: list[Any], staff: bool) -> None:
        """The replies queued in ``outbound`` in the use case's transaction, as the Telegram channel does."""
        for reply in replies:
            payload = json.dumps({"kind": "text", "text": reply.text, "buttons": []}, ensure_ascii=False)
            await repos.outbound.add("test", "dm", 0, payload, None, 0)

    async def say(n: int, text: str, key: str) -> list[str]:
        who = f"m{n}"
        msg = Inbound(channel="test", chat_id=f"dm-{who}", sender=Identity("test", who, f"Member {n}", who),
                      text=text, is_group=False, key=key, message_id=str(n))  # fmt: skip
        handled = await runtime.dispatcher.handle_update(msg, port, sink)
        return [r.text for r in handled.replies]

    async def check_in(n: int) -> None:
        texts = await say(n, "/checkin", f"test:update:{n}")
        if not any("Checked in" in t for t in texts):
            problems.append(f"m{n}: {texts[:1]}")

    try:
        if returning:
            for n in range(warm + members):
                await say(n, "/points", f"test:first:{n}")
        for n in range(warm):
            await check_in(n)
        writer = runtime.deps.db._writer  # the SQLite engine's one writer connection
        if statements is not None:
            writer.set_trace_callback(lambda sql: statements.update([shape(sql)]))
        cpu0, wall0 = time.process_time(), time.perf_counter()
        for n in range(warm, warm + members):
            if not baseline:
                await check_in(n)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        writer.set_trace_callback(None)
        async with runtime.deps.db.read() as repos:
            rows = await repos.conn.execute_fetchall(
                "SELECT (SELECT COUNT(*) FROM checkins), (SELECT COUNT(DISTINCT member_id) FROM checkins),"
                " (SELECT COUNT(*) FROM ledger WHERE reason = 'checkin'), (SELECT COUNT(*) FROM outbound)"
            )
        checkins, distinct, ledger, queued = (int(v) for v in rows[0])
        total = warm + (0 if baseline else members)
        replies = total + (warm + members if returning else 0)
        if (checkins, distinct, ledger, queued) != (total, total, total, replies):
            problems.append(f"check-ins {checkins} ({distinct} members), ledger {ledger}, replies {queued};"
                            f" expected {total} each")  # fmt: skip
    finally:
        await runtime.close()
    return cpu / members, wall / members, problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--members", type=int, default=2000, help="check-ins counted per round")
    parser.add_argument("--warm", type=int, default=200, help="check-ins before counting (not counted)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds, each on a fresh file; the median is printed")
    parser.add_argument("--returning", action="store_true", help="members who wrote before (not a first contact)")
    parser.add_argument(
        "--baseline",
        action="store_true",
        help="all but the counted check-ins: under callgrind, a full run's surplus is theirs",
    )
    parser.add_argument("--statements", action="store_true", help="list the SQL run per check-in (slower)")
    parser.add_argument("--tree", default=str(Path(__file__).resolve().parents[1]), help="checkout to import")
    args = parser.parse_args(argv)
    load_tree(Path(args.tree))
    import logging

    logging.basicConfig(level=logging.WARNING)
    cpus: list[float] = []
    walls: list[float] = []
    failed = False
    with tempfile.TemporaryDirectory(prefix="vipbot-path-") as tmp:
        for r in range(args.rounds):
            seen: Counter[str] | None = Counter() if args.statements else None
            work = one_round(args.members, args.warm, Path(tmp), seen, args.returning, args.baseline)
            cpu, wall, problems = asyncio.run(work)
            for sql, count in (seen or Counter()).most_common():
                print(f"  {count / args.members:5.2f} x {sql}")
            cpus.append(cpu)
            walls.append(wall)
            print(f"round {r + 1}: {cpu * 1000:.3f} ms CPU, {wall * 1000:.3f} ms wall per check-in"
                  f"{'; ' + '; '.join(problems[:3]) if problems else ''}", flush=True)  # fmt: skip
            failed = failed or bool(problems)
    print(f"tree {args.tree}: median {statistics.median(cpus) * 1000:.3f} ms CPU, "
          f"{statistics.median(walls) * 1000:.3f} ms wall per check-in over {args.rounds} rounds of"
          f" {args.members} ({os.getloadavg()[0]:.2f} load)")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
