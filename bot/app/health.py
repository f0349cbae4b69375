"""GET /healthz: a small JSON status for load balancers and monitors (database, channels, scheduler, who leads);
and
GET /metrics: the figures of bot.app.metrics in Prometheus' text format, for the networks in
`http.metrics_from` only (loopback by default; 403 for everyone else: the figures are the shop's business).

`/healthz?detail=1` adds what waits (updates not handled, pushes not settled, replies not sent), for the
same networks; anyone else gets the plain status.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from bot.app.metrics import Metrics, Network, may_scrape
from bot.app.runtime import Runtime
from bot.app.web import QuietHandler


def _peer_and_client(handler: QuietHandler) -> tuple[str | None, str | None]:
    """The connection's own address and the client's (which tornado takes from X-Real-IP / X-Forwarded-For
    when a proxy sets them)."""
    request = handler.request
    address = getattr(getattr(request.connection, "context", None), "address", None)
    peer = str(address[0]) if isinstance(address, tuple) and address else None
    return peer, request.remote_ip


class HealthHandler(QuietHandler):
    def initialize(self, runtime: Runtime, channels: Callable[[], dict[str, str]],
                   networks: Sequence[Network] = ()) -> None:  # fmt: skip
        self.runtime = runtime
        self.channels = channels
        self.networks = networks

    async def get(self) -> None:
        database = True
        try:
            await asyncio.wait_for(self.runtime.deps.db.ping(), timeout=2)
        except Exception:
            database = False
        leader = self.runtime.leader
        leading = leader.leading
        scheduler = self.runtime.scheduler.running
        # A follower runs no scheduler (the leader does) and is as healthy for a load balancer as the leader.
        healthy = database and (scheduler or not leading) and not self.runtime.lost.is_set()
        body: dict[str, object] = {"status": "ok" if healthy else "degraded", "database": database,
                                   "scheduler": scheduler, "channels": self.channels(), "leading": leading}  # fmt: skip
        trusted = may_scrape(*_peer_and_client(self), self.networks)
        if trusted:  # the processes' names carry pids and the host name: not for the public behind nginx
            body["process"], body["leader"] = leader.name, await leader.holder()
        detail = self.get_query_argument("detail", "") not in ("", "0")
        if detail and trusted:
            body["waiting"] = await self._waiting(self.runtime.metrics)
        self.set_status(200 if healthy else 503)
        self.finish(body)

    @staticmethod
    async def _waiting(metrics: Metrics) -> dict[str, object]:
        snap = await metrics.refresh()
        if not snap.up:
            return {}
        replies: dict[str, int] = {}
        for (channel, _held), count in snap.replies.items():
            replies[channel] = replies.get(channel, 0) + count
        return {"updates": snap.inbox, "pushes": snap.pushes, "replies": replies, "senders": metrics.sender_queues()}


class MetricsHandler(QuietHandler):
    def initialize(self, metrics: Metrics, networks: Sequence[Network]) -> None:
        self.metrics = metrics
        self.networks = networks

    async def get(self) -> None:
        if not may_scrape(*_peer_and_client(self), self.networks):
            self.set_status(403)
            self.finish({"ok": False, "error": "metrics are not served to this address (see http.metrics_from)"})
            return
        await self.metrics.refresh()
        body, content_type = self.metrics.exposition()
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)
