"""The fake Bot API of ``tests/fakes/bot_api.py`` in its own process, for the benchmarks.

``FakeServer.start()`` spawns a process serving ``FakeBotApi`` on 127.0.0.1 (an ephemeral port), so that
its CPU does not compete with the bot being measured, plus a small control API under ``/control/``:

* ``GET  /control/stats``: methods called, successful sendMessage count, the chats they quoted, top texts,
  the server's CPU seconds (used by ``checkin_throughput.py``; ``FakeServer.start(stats=f)`` answers
  ``f(api)`` instead, computed in the server process);
* ``GET  /control/broadcast?text=T[&full=1]``: for successful sendMessage calls whose text is exactly T,
  the number of copies, distinct chats, first and last server-side arrival times (``time.monotonic()`` of
  the server process), the number of 429 answers to sendMessage, and with ``full=1`` the per-chat counts
  and the arrival times of every accepted copy and every 429;
* ``GET  /control/messages?chat_id=C``: every sendMessage into chat C (text, status, arrival time);
* ``POST /control/push`` with JSON ``{"chat_id", "user_id", "text"}``: queue a message update for
  ``getUpdates`` (the bot receives it by long polling);
* ``POST /control/reset``: forget the recorded calls; ``POST /control/stop``: shut the process down.

The plumbing is shared with other fakes (``webhooks.py`` serves ``FakeWeChatApi`` the same way):
``ControlHandler`` (base of a control handler), ``serve_until_stopped`` (in the child), ``spawn_fake`` and
``SpawnedFake`` (in the benchmark: start, ``control``, ``stats``, ``reset``, ``stop``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import multiprocessing
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from tornado.web import RequestHandler

from tests.fakes.bot_api import FakeBotApi, message_update, user

DEFAULT_TOKEN = "123456:BENCH-TOKEN"


class ControlHandler(RequestHandler):
    """Base of a ``/control/(\\w+)`` handler next to a fake's methods: the fake and the event that stops it."""

    def initialize(self, api: Any, stop: asyncio.Event) -> None:
        self.api = api
        self.stop = stop

    def check_xsrf_cookie(self) -> None:
        return None


async def serve_until_stopped(api: Any, handler: type[RequestHandler], conn: Connection, **kwargs: Any) -> None:
    """Add ``handler`` under ``/control/`` to the started fake ``api``, send its port through ``conn``, then
    serve until the handler sets the stop event and stop the fake. Neither a line per 429 answer nor the 500
    of a long poll cut short by stop() is logged."""
    logging.getLogger("tornado.access").setLevel(logging.CRITICAL)
    stop = asyncio.Event()
    assert api._server is not None
    api._server.request_callback.add_handlers(  # type: ignore[attr-defined]
        r".*", [(r"/control/(\w+)", handler, {"api": api, "stop": stop, **kwargs})]
    )
    conn.send(api.port)
    conn.close()
    await stop.wait()
    await api.stop()


def control_call(
    port: int, action: str, method: str = "GET", query: dict[str, Any] | None = None, body: Any = None
) -> dict[str, Any]:
    """One call of a spawned fake's control API (``http://127.0.0.1:port/control/<action>``)."""
    url = f"http://127.0.0.1:{port}/control/{action}"
    if query:
        url += "?" + urllib.parse.urlencode(query)
    data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
    request = urllib.request.Request(url, method=method, data=data)
    with urllib.request.urlopen(request, timeout=30) as response:
        return dict(json.loads(response.read()))


def spawn_fake(
    target: Callable[..., None], args: tuple[Any, ...], name: str, what: str
) -> tuple[multiprocessing.process.BaseProcess, int]:
    """Start ``target(conn, *args)`` in a spawned daemon process and wait (60 s) for the port it sends."""
    ctx = multiprocessing.get_context("spawn")
    receiver, sender = ctx.Pipe(duplex=False)
    process = ctx.Process(target=target, args=(sender, *args), name=name, daemon=True)
    process.start()
    sender.close()
    if not receiver.poll(60):
        process.kill()
        process.join(5)
        raise RuntimeError(f"{what} did not start within 60 s")
    return process, int(receiver.recv())


@dataclass
class SpawnedFake:
    """A fake API served by a spawned process, with its control API."""

    process: multiprocessing.process.BaseProcess
    port: int

    def control(
        self, action: str, method: str = "GET", query: dict[str, Any] | None = None, body: Any = None
    ) -> dict[str, Any]:
        return control_call(self.port, action, method, query, body)

    def stats(self) -> dict[str, Any]:
        return self.control("stats")

    def reset(self) -> None:
        self.control("reset", "POST")

    def stop(self) -> None:
        """Ask the process to stop (``POST /control/stop``); kill it if it has not ended within 10 s."""
        try:
            self.control("stop", "POST")
        except OSError:
            pass
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


StatsFunction = Callable[[FakeBotApi], dict[str, Any]]


def default_stats(api: FakeBotApi) -> dict[str, Any]:
    """What ``GET /control/stats`` answers unless ``FakeServer.start(stats=...)`` says otherwise."""
    sends = api.sent("sendMessage")
    reply_to = [int(p["reply_parameters"]["message_id"]) for p in sends if isinstance(p.get("reply_parameters"), dict)]
    return {
        "methods": dict(Counter(c.method for c in api.calls)),
        "send_message": len(sends),
        "reply_to": reply_to,
        "texts": Counter(str(p.get("text", "")) for p in sends).most_common(3),
        "cpu_seconds": time.process_time(),
    }


class _ControlHandler(ControlHandler):
    def initialize(self, api: FakeBotApi, stop: asyncio.Event, stats: StatsFunction = default_stats) -> None:
        super().initialize(api, stop)
        self.stats_function = stats

    def get(self, action: str) -> None:
        if action == "stats":
            self.finish(self.stats_function(self.api))
        elif action == "broadcast":
            self.finish(self._broadcast(self.get_argument("text"), self.get_argument("full", "") == "1"))
        elif action == "messages":
            chat_id = int(self.get_argument("chat_id"))
            self.finish(
                {
                    "messages": [
                        {"text": str(c.params.get("text", "")), "status": c.status, "at": c.at}
                        for c in self.api.calls
                        if c.method == "sendMessage" and int(c.params.get("chat_id", 0) or 0) == chat_id
                    ]
                }
            )
        else:
            self.send_error(404)

    def post(self, action: str) -> None:
        if action == "reset":
            self.api.clear()
        elif action == "stop":
            self.stop.set()
        elif action == "push":
            body = json.loads(self.request.body or b"{}")
            sender = user(int(body["user_id"]))
            self.api.push_update(message_update(self.api, int(body["chat_id"]), sender, str(body["text"])))
        else:
            self.send_error(404)
            return
        self.finish({"ok": True})

    def _broadcast(self, text: str, full: bool) -> dict[str, Any]:
        per_chat: Counter[int] = Counter()
        times: list[float] = []
        refused_times: list[float] = []
        first = last = None
        refused = 0
        for call in self.api.calls:
            if call.method != "sendMessage":
                continue
            if call.status == 429:
                refused += 1
                refused_times.append(call.at)
            elif call.status == 200 and call.params.get("text") == text:
                per_chat[int(call.params.get("chat_id", 0) or 0)] += 1
                times.append(call.at)
                first = call.at if first is None else first
                last = call.at
        result: dict[str, Any] = {
            "accepted": sum(per_chat.values()),
            "chats": len(per_chat),
            "first_at": first,
            "last_at": last,
            "refused_429": refused,
            "now": time.monotonic(),
            "cpu_seconds": time.process_time(),
        }
        if full:
            result["per_chat"] = {str(chat): n for chat, n in per_chat.items()}
            result["times"] = times
            result["refused_times"] = refused_times
        return result


async def _serve_fake(conn: Connection, token: str, rate_limit: float | None, stats: StatsFunction) -> None:
    api = await FakeBotApi(token=token, rate_limit_per_second=rate_limit).start()
    await serve_until_stopped(api, _ControlHandler, conn, stats=stats)


def fake_server_main(conn: Connection, token: str, rate_limit: float | None, stats: StatsFunction) -> None:
    """Entry point of the spawned server process."""
    asyncio.run(_serve_fake(conn, token, rate_limit, stats))


@dataclass
class FakeServer(SpawnedFake):
    token: str = DEFAULT_TOKEN

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/bot"

    def broadcast(self, text: str, full: bool = False) -> dict[str, Any]:
        return self.control("broadcast", query={"text": text, "full": "1" if full else ""})

    def messages(self, chat_id: int) -> list[dict[str, Any]]:
        return list(self.control("messages", query={"chat_id": chat_id})["messages"])

    def push_message(self, chat_id: int, user_id: int, text: str) -> None:
        self.control("push", "POST", body={"chat_id": chat_id, "user_id": user_id, "text": text})

    @classmethod
    def start(
        cls, token: str = DEFAULT_TOKEN, rate_limit: float | None = None, stats: StatsFunction = default_stats
    ) -> FakeServer:
        """Spawn the server. ``stats`` (a module-level function, run in the server process) makes the
        answer of ``GET /control/stats`` from the fake."""
        process, port = spawn_fake(fake_server_main, (token, rate_limit, stats), "fake-bot-api", "the fake Bot API")
        return cls(process, port, token)
