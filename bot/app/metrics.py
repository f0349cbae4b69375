"""The bot's figures for monitoring, served at /metrics in Prometheus' text format (see bot.app.health).

Each runtime has its own `Metrics` and, built on the first scrape, its own `CollectorRegistry` (never the
process-wide default one), so several runtimes in one process (tests) keep separate figures. The figures are
plain numbers kept where things happen, and turned into metric families only when scraped:

- updates handled, answers and handler errors: counted by `MeteredDispatcher`, the runtime's dispatcher, where
  every channel's update comes back from the handlers (a handler's fault is caught, logged and answered with
  the apology there, and marked `Handled.failed`);
- write transactions' time: the database's `on_transaction` hook, set by the runtime to `db_seconds.observe`;
- 429s, queue depths of the channels: read from the channel objects `watch_telegram` was given;
- pushes settled (sent, failed, uncertain, retried): counted by the outbox;
- rows waiting in the database (pushes not final, updates not handled, replies not sent): counted on each
  scrape by `refresh()`, one read on a reader connection (off the event loop) through the repositories'
  `waiting_counts`, `pending_counts` and `queued_counts`, every count on an index or on a table that only
  holds what waits; the final states (a shop's whole history of sent pushes) are counters.

Labels stay few: a channel, a state, a kind of chat; never a chat or member id.
"""

from __future__ import annotations

import asyncio
import bisect
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from handlers.core.command import Command
from handlers.core.deps import Deps
from handlers.core.dispatch import Dispatcher, Handled, ReplySink
from handlers.core.messages import Inbound
from handlers.core.ports import ChannelPort
from storage.db.database import Database
from storage.deliveries import WAITING_STATES

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from bot.delivery.outbox import Outbox

log = logging.getLogger(__name__)

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DB_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds (seconds) of the write transactions' histogram: a check-in is well under a millisecond."""
UPDATE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""Upper bounds (seconds) of the updates' histogram (rights lookups at the platform included)."""
PROBE_SECONDS = 2.0
"""A scrape waits this long for the database's figures; past it they are reported missing (`vipbot_db_up 0`)."""
PUSH_STATES = WAITING_STATES
"""The deliveries' states still to be settled (counted on the `deliveries_due` index); 'sent' and 'failed'
are final and grow with the shop's history, so they are counters of this process instead."""
PUSH_OUTCOMES = ("sent", "failed", "uncertain", "retried")
"""How the outbox settles a push attempt (`Outbox.settled`)."""
FLOOD_SCOPES = ("group", "private", "callback", "updates")
"""Where a Telegram 429 can come from: a group, a private chat, a button's toast, getUpdates."""


# --- plain figures ---------------------------------------------------------------------------------
@dataclass
class Timings:
    """A histogram's counts: per bucket (`bounds`, then +Inf), their sum and number."""

    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)
    total: float = 0.0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, seconds)] += 1
        self.total += seconds

    def cumulative(self) -> list[tuple[str, float]]:
        """(upper bound, observations at or under it) as the exposition format wants them."""
        running, out = 0, []
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out


@dataclass
class Snapshot:
    """What the last scrape read from the database."""

    up: bool = False
    ping_seconds: float = 0.0
    pushes: dict[str, int] = field(default_factory=dict)
    """State (PUSH_STATES) -> deliveries in it."""
    inbox: dict[str, int] = field(default_factory=dict)
    """Channel -> updates stored and not handled yet."""
    replies: dict[tuple[str, bool], int] = field(default_factory=dict)
    """(channel, held) -> replies queued and not sent yet (held: waiting for the member to start the bot)."""


@dataclass
class _Watched:
    """A channel's objects whose live figures a scrape reads (duck-typed: intake, sender, transport)."""

    intake: Any = None
    sender: Any = None
    transport: Any = None


class Metrics:
    def __init__(self) -> None:
        self.updates: Counter[str] = Counter()
        """Channel -> updates handled (done, a repeat not counted again)."""
        self.answers: Counter[str] = Counter()
        """Channel -> replies the handlers gave those updates."""
        self.handler_errors: Counter[str] = Counter()
        """Channel -> updates whose handling failed with an error (answered with the apology)."""
        self.storage_faults: Counter[str] = Counter()
        """Channel -> updates put back because storage failed (a full disk): handled again later."""
        self.update_seconds: dict[str, Timings] = {}
        self.db_seconds = Timings(DB_BUCKETS)
        self.snapshot = Snapshot()
        self.db: Database | None = None
        self.outbox: Outbox | None = None
        self.channels: set[str] = set()
        self._watched: dict[str, _Watched] = {}
        self._registry: CollectorRegistry | None = None
        self.leading: Callable[[], bool] = lambda: True
        """Whether this process leads (see bot.app.leader)."""

    def bind(self, db: Database, outbox: Outbox, leading: Callable[[], bool] | None = None) -> None:
        self.db, self.outbox = db, outbox
        if leading is not None:
            self.leading = leading

    def watch_telegram(self, channel: Any) -> None:
        """Read the Telegram channel's intake, sender and transport (429s, queues) on each scrape; call it after
        the channel's `attach` (which makes its intake)."""
        self._watched["telegram"] = _Watched(channel.intake, channel.sender, channel.transport)
        self.channels.add("telegram")

    def watch(self, name: str, *, sender: Any = None) -> None:
        """A channel that is running (its counters show 0 from the start) and, if it has one, its sender."""
        self._watched.setdefault(name, _Watched()).sender = sender
        self.channels.add(name)

    def handled(self, channel: str, handled: Handled, seconds: float) -> None:
        self.channels.add(channel)
        if handled.committed and not handled.repeat:
            self.updates[channel] += 1
            self.answers[channel] += len(handled.replies)
        elif not handled.committed:
            self.storage_faults[channel] += 1
        if handled.failed:
            self.handler_errors[channel] += 1
        timings = self.update_seconds.get(channel)
        if timings is None:
            timings = self.update_seconds[channel] = Timings(UPDATE_BUCKETS)
        timings.observe(seconds)

    # --- on each scrape ----------------------------------------------------------------------------
    async def refresh(self) -> Snapshot:
        """Read the database's figures (a ping, then one read off the loop); on failure or after
        PROBE_SECONDS they are missing and `up` is False."""
        if self.db is None:
            return self.snapshot
        try:
            self.snapshot = await asyncio.wait_for(self._read(self.db), PROBE_SECONDS)
        except Exception as exc:  # TimeoutError included: the figures are missing, the scrape still answers
            log.warning("metrics: the database did not answer: %s", exc or type(exc).__name__)
            self.snapshot = Snapshot(up=False)
        return self.snapshot

    @staticmethod
    async def _read(db: Database) -> Snapshot:
        started = time.perf_counter()
        await db.ping()
        ping = time.perf_counter() - started
        async with db.read() as repos:  # one snapshot: the three counts agree with each other
            pushes = await repos.deliveries.waiting_counts()
            inbox = await repos.inbox.pending_counts()
            replies = await repos.outbound.queued_counts()
        return Snapshot(up=True, ping_seconds=ping, pushes=pushes, inbox=inbox, replies=replies)

    @property
    def registry(self) -> CollectorRegistry:
        """This runtime's registry (prometheus_client is imported on first use: the console never needs it)."""
        if self._registry is None:
            from prometheus_client import CollectorRegistry

            self._registry = CollectorRegistry()
            self._registry.register(_Collector(self))
        return self._registry

    def exposition(self) -> tuple[bytes, str]:
        """(body, content type) of the text format, from the figures as they are (see `refresh`)."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    # --- live figures --------------------------------------------------------------------------------
    def floods(self) -> dict[str, int]:
        """Scope (FLOOD_SCOPES) -> 429s Telegram answered since the start."""
        watched = self._watched.get("telegram")
        if watched is None:
            return {}
        counts = dict.fromkeys(FLOOD_SCOPES, 0)
        for scope, count in getattr(watched.transport, "floods", {}).items():
            counts[scope] = counts.get(scope, 0) + count
        counts["updates"] += int(getattr(watched.intake, "floods", 0))
        return counts

    def errors(self) -> dict[str, int]:
        """Handler errors by channel: the dispatcher's, and updates a channel could not hand to it (a bug there)."""
        counts = {name: self.handler_errors[name] for name in self.channels}
        for name, watched in self._watched.items():
            counts[name] = counts.get(name, 0) + int(getattr(watched.intake, "failures", 0))
        return counts

    def backlogs(self) -> dict[str, int]:
        """Channel -> updates in memory, waiting for a worker or being handled."""
        return {name: int(w.intake.backlog) for name, w in self._watched.items() if w.intake is not None}

    def sender_queues(self) -> dict[str, int]:
        """Channel -> messages waiting in its sender or on their way."""
        return {name: int(w.sender.pending()) for name, w in self._watched.items() if w.sender is not None}

    def settled(self) -> Mapping[tuple[str, str], int]:
        """(channel, outcome) -> pushes the outbox settled since the start (0 for each channel it pushes on)."""
        if self.outbox is None:
            return {}
        counts = {(channel, outcome): 0 for channel in self.outbox.channels() for outcome in PUSH_OUTCOMES}
        counts.update(self.outbox.settled)
        return counts


def access_networks(entries: Iterable[str]) -> list[Network]:
    return [ipaddress.ip_network(entry, strict=False) for entry in entries]


def address_allowed(address: str | None, networks: Sequence[Network]) -> bool:
    """Whether `address` (an IP, IPv4-mapped IPv6 understood) is in one of `networks`; None or junk is not."""
    if not address:
        return False
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in networks)


def may_scrape(peer: str | None, client: str | None, networks: Sequence[Network]) -> bool:
    """/metrics is for these networks only: both the connection's own address (`peer`) and the client a reverse
    proxy reports (`client`, from X-Real-IP / X-Forwarded-For; the peer itself without a proxy) must be in one.
    The peer alone would let every client of a proxy on the same host in; the reported client alone would let
    anyone who writes `X-Real-IP: 127.0.0.1` in, when the port is reachable without the proxy."""
    return address_allowed(peer, networks) and address_allowed(client, networks)


# --- the collector -------------------------------------------------------------------------------
class _Collector:
    """Turns a `Metrics` into metric families at each scrape (prometheus_client calls `collect`)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        m = self.metrics
        channels = sorted(m.channels)

        def by_channel(family: Any, values: Mapping[str, int]) -> Any:
            for name in sorted(set(channels) | set(values)):
                family.add_metric([name], values.get(name, 0))
            return family

        yield by_channel(CounterMetricFamily("vipbot_updates", "Updates handled (messages, button presses, poll "
                                             "answers), a repeat not counted again.", labels=["channel"]), m.updates)
        yield by_channel(CounterMetricFamily("vipbot_answers", "Replies the handlers gave to the updates handled.",
                                             labels=["channel"]), m.answers)  # fmt: skip
        yield by_channel(CounterMetricFamily("vipbot_handler_errors", "Updates whose handling failed with an error "
                                             "(logged, answered with the apology).", labels=["channel"]), m.errors())
        yield by_channel(CounterMetricFamily("vipbot_storage_faults", "Updates put back because storage failed "
                                             "(handled again later).", labels=["channel"]), m.storage_faults)
        floods = m.floods()
        if floods:
            family = CounterMetricFamily("vipbot_telegram_429", "Flood waits (HTTP 429) Telegram asked for, by where "
                                         "the call went.", labels=["scope"])  # fmt: skip
            for scope, count in sorted(floods.items()):
                family.add_metric([scope], count)
            yield family
        pushes = CounterMetricFamily("vipbot_pushes", "Pushes (announcements, greetings, staff notices) settled, by "
                                     "outcome: sent, failed, uncertain, retried.", labels=["channel", "outcome"])
        for (channel, outcome), count in sorted(m.settled().items()):
            pushes.add_metric([channel, outcome], count)
        yield pushes
        yield GaugeMetricFamily("vipbot_leading", "1 when this process leads (drains the outbox, runs the schedule);"
                                " exactly one of a database's workers should.", value=int(m.leading()))  # fmt: skip
        snap = m.snapshot
        yield GaugeMetricFamily("vipbot_db_up", "1 when the database answered the last scrape.", value=int(snap.up))
        if snap.up:
            yield GaugeMetricFamily("vipbot_db_ping_seconds", "Time a trivial query on a reader and on the writer "
                                    "took at the last scrape (waiting for the write lock included).",
                                    value=snap.ping_seconds)  # fmt: skip
            waiting = GaugeMetricFamily("vipbot_pushes_waiting", "Deliveries not settled yet, by state (pending: "
                                        "queued or to retry; sending: handed to the platform; uncertain: for "
                                        "staff to resend).", labels=["state"])  # fmt: skip
            for state in PUSH_STATES:
                waiting.add_metric([state], snap.pushes.get(state, 0))
            yield waiting
            yield by_channel(GaugeMetricFamily("vipbot_inbox_pending", "Updates stored and not handled yet.",
                                               labels=["channel"]), snap.inbox)  # fmt: skip
            replies = GaugeMetricFamily("vipbot_replies_queued", "Replies queued in the database and not sent yet "
                                        "(held: waiting for the member to start the bot).",
                                        labels=["channel", "held"])  # fmt: skip
            for name in channels:
                for held in (False, True):
                    replies.add_metric([name, str(held).lower()], snap.replies.get((name, held), 0))
            yield replies
        backlog = GaugeMetricFamily("vipbot_intake_backlog", "Updates in memory waiting for a worker or being "
                                    "handled.", labels=["channel"])  # fmt: skip
        for name, count in sorted(m.backlogs().items()):
            backlog.add_metric([name], count)
        yield backlog
        queue = GaugeMetricFamily("vipbot_sender_queue", "Messages waiting in a channel's sender or on their way.",
                                  labels=["channel"])  # fmt: skip
        for name, count in sorted(m.sender_queues().items()):
            queue.add_metric([name], count)
        yield queue
        db = HistogramMetricFamily("vipbot_db_transaction_seconds", "Write transactions, from asking for the write "
                                   "lock to the end of the COMMIT.")  # fmt: skip
        db.add_metric([], m.db_seconds.cumulative(), m.db_seconds.total)
        yield db
        updates = HistogramMetricFamily("vipbot_update_seconds", "Time to handle one update (rights lookups, the "
                                        "handler, its transaction).", labels=["channel"])  # fmt: skip
        for name, timings in sorted(m.update_seconds.items()):
            updates.add_metric([name], timings.cumulative(), timings.total)
        yield updates


# --- where the figures come from ---------------------------------------------------------------------
class MeteredDispatcher(Dispatcher):
    """The dispatcher, counting each update it hands back to its channel (updates, answers, errors, time)."""

    def __init__(self, deps: Deps, commands: Sequence[Command], metrics: Metrics) -> None:
        super().__init__(deps, commands)
        self.metrics = metrics

    async def handle_update(self, msg: Inbound, port: ChannelPort, sink: ReplySink | None = None) -> Handled:
        started = time.perf_counter()
        handled = await super().handle_update(msg, port, sink)
        self.metrics.handled(msg.channel, handled, time.perf_counter() - started)
        return handled
