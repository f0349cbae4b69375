"""The fake Bot API of ``tests/fakes/bot_api.py`` in its own process, for the benchmarks.

``FakeServer.start()`` spawns a process serving ``FakeBotApi`` on 127.0.0.1 (an ephemeral port), so that
its CPU does not compete with the bot being measured, plus a small control API under ``/control/``:

* ``GET  /control/stats``: methods called, successful sendMessage count, the chats they quoted, top texts,
  the server's CPU seconds (``FakeServer.start(stats=f)`` answers ``f(api)`` instead, computed in the server
  process);
* ``GET  /control/broadcast?text=T[&full=1]``: for successful sendMessage calls whose text is exactly T,
  the number of copies, distinct chats, first and last server-side arrival times (``time.monotonic()`` of
  the server process), the number of 429 answers to sendMessage, and with ``full=1`` the per-chat counts
  and the arrival times of every accepted copy and every 429;
* ``GET  /control/messages?chat_id=C``: every sendMessage into chat C (text, status, arrival time);
* ``GET  /control/progress``: successful sendMessage calls, the distinct chats they went to, and calls per
  method (cheap enough to poll while a run goes on);
* ``POST /control/push`` with JSON ``{"chat_id", "user_id", "text"}``: queue a message update for
  ``getUpdates`` (the bot receives it by long polling);
* ``POST /control/push_many`` with JSON ``{"messages": [[chat_id, user_id, text], ...], "per_second": R}``:
  queue many such updates, all at once (R = 0) or paced at R per second (answered at once; the pushes go on
  in the server); every push is noted in ``PUSH_LOG`` for a stats function;
* ``POST /control/reset``: forget the recorded calls; ``POST /control/stop``: shut the process down;
* ``POST /control/push_updates`` with JSON ``{"updates": [...]}``, each item ``{"kind": "message", "chat_id",
  "user_id", "first_name"?, "text"}`` or ``{"kind": "callback", "chat_id", "user_id", "first_name"?, "data",
  "message_id", "query_id"?}`` (a button press under the bot's message ``message_id``): queue them all for
  ``getUpdates`` at once; answers their ``update_ids``, ``query_ids`` and ``at`` (when they were queued);
* ``GET  /control/calls?since=N``: every call from index N of the record on, except ``getUpdates`` (only
  counted, in ``get_updates``): method, chat, text (or caption), callback query id, the callback data of its
  buttons, status, arrival time and the message id it created or edited; ``next`` is the index to ask next;
* ``POST /control/limits`` with JSON ``{"on": bool}``: Telegram's flood limits on or off (the windows are
  emptied); ``POST /control/drop``: forget the updates still queued for ``getUpdates``.

Arrival times (``at``) are the server process's ``time.monotonic()``: on Linux the same clock as the
benchmark's (``CLOCK_MONOTONIC`` is system-wide). The fake served is ``RecordingBotApi``: ``FakeBotApi`` (same
answers, same limits) plus the records ``calls`` and ``push_updates`` need.

The plumbing is shared with other fakes (``webhooks.py`` serves ``FakeWeChatApi`` the same way):
``ControlHandler`` (base of a control handler), ``serve_until_stopped`` (in the child), ``spawn_fake`` and
``SpawnedFake`` (in the benchmark: start, ``control``, ``stats``, ``reset``, ``stop``).
``FakeServer.start(limits=False)`` switches off the fake's Telegram flood limits (``FakeBotApi.limits``).
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
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from tornado.web import RequestHandler

from tests.fakes.bot_api import BOT_ID, BOT_USERNAME, FakeBotApi, message_update, user

DEFAULT_TOKEN = "123456:BENCH-TOKEN"
PUSH_LOG: list[tuple[int, int, float]] = []
"""In the server process: (chat id, message id, ``time.monotonic()``) of every message update queued by
``/control/push`` or ``/control/push_many``, in order (a stats function reads it)."""


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


@dataclass
class RecordingBotApi(FakeBotApi):
    """``FakeBotApi`` that also remembers when each update was queued and the message id each successful call
    created, for ``/control/push_updates`` and ``/control/calls``."""

    pushed_at: dict[int, float] = field(default_factory=dict)
    """update_id -> when it was queued for getUpdates (``now()``)."""
    result_ids: dict[int, int] = field(default_factory=dict)
    """id() of a recorded call's params -> the message id in its answer."""

    def push_update(self, update: dict[str, Any]) -> None:
        self.pushed_at[int(update["update_id"])] = self.now()
        super().push_update(update)

    def answer(self, method: str, params: dict[str, Any], at: float | None = None) -> tuple[int, dict[str, Any]]:
        status, body = super().answer(method, params, at)
        result = body.get("result") if status == 200 else None
        if isinstance(result, dict) and "message_id" in result:
            self.result_ids[id(params)] = int(result["message_id"])
        return status, body

    def clear(self) -> None:
        super().clear()
        self.result_ids.clear()

    def drop_updates(self) -> int:
        """Forget the updates still queued, as if getUpdates had confirmed them; how many."""
        dropped = len(self._updates)
        self._updates.clear()
        return dropped


def _button_data(params: dict[str, Any]) -> list[str]:
    markup = params.get("reply_markup")
    if isinstance(markup, str):
        try:
            markup = json.loads(markup)
        except ValueError:
            return []
    rows = markup.get("inline_keyboard") if isinstance(markup, dict) else None
    return [str(b["callback_data"]) for row in rows or [] for b in row if isinstance(b, dict) and "callback_data" in b]


def call_record(api: FakeBotApi, index: int, call: Any) -> dict[str, Any]:
    """One recorded call as ``GET /control/calls`` reports it."""
    params = call.params
    chat = params.get("chat_id")
    try:
        chat = int(chat) if chat not in (None, "") else None
    except (TypeError, ValueError):
        chat = str(chat)
    message_id = params.get("message_id")
    if message_id in (None, ""):
        message_id = getattr(api, "result_ids", {}).get(id(params))
    return {
        "i": index,
        "method": call.method,
        "chat": chat,
        "text": str(params.get("text") or params.get("caption") or ""),
        "query_id": params.get("callback_query_id"),
        "buttons": _button_data(params),
        "status": call.status,
        "at": call.at,
        "message_id": int(message_id) if message_id not in (None, "") else None,
    }


def pushed_update(api: FakeBotApi, item: dict[str, Any]) -> dict[str, Any]:
    """The Bot API update a ``/control/push_updates`` item describes."""
    sender = user(int(item["user_id"]), str(item.get("first_name") or ""))
    chat_id = int(item["chat_id"])
    if item.get("kind", "message") == "message":
        return message_update(api, chat_id, sender, str(item["text"]))
    query_id = str(item.get("query_id") or f"cb{next(api._message_ids)}")
    chat: dict[str, Any] = {"id": chat_id, "type": "private" if chat_id > 0 else "supergroup", "title": "VIP"}
    return {
        "update_id": api.next_update_id(),
        "callback_query": {
            "id": query_id,
            "from": sender,
            "chat_instance": f"ci{chat_id}",
            "data": str(item["data"]),
            "message": {
                "message_id": int(item["message_id"]),
                "date": int(time.time()),
                "chat": chat,
                "from": {"id": BOT_ID, "is_bot": True, "first_name": "VIP Bot", "username": BOT_USERNAME},
                "text": "",
            },
        },
    }


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


_PACED: set[asyncio.Task[None]] = set()
"""Paced pushes under way (a reference keeps each task alive)."""


@dataclass
class _Progress:
    """What ``/control/progress`` counted so far; it looks only at the calls recorded since its last answer."""

    calls: list[Any] = field(default_factory=list)
    scanned: int = 0
    sent: int = 0
    chats: set[Any] = field(default_factory=set)
    methods: Counter[str] = field(default_factory=Counter)


_PROGRESS = _Progress()


def _progress(api: FakeBotApi) -> dict[str, Any]:
    global _PROGRESS
    calls = api.calls
    if _PROGRESS.calls is not calls or len(calls) < _PROGRESS.scanned:  # another fake, or the record was cleared
        _PROGRESS = _Progress(calls)
    state = _PROGRESS
    for call in calls[state.scanned :]:
        state.methods[call.method] += 1
        if call.method == "sendMessage" and call.status == 200:
            state.sent += 1
            state.chats.add(call.params.get("chat_id"))
    state.scanned = len(calls)
    return {"sent": state.sent, "chats": len(state.chats), "methods": dict(state.methods), "pushed": len(PUSH_LOG)}


class _ControlHandler(ControlHandler):
    def initialize(self, api: FakeBotApi, stop: asyncio.Event, stats: StatsFunction = default_stats) -> None:
        super().initialize(api, stop)
        self.stats_function = stats

    def get(self, action: str) -> None:
        if action == "stats":
            self.finish(self.stats_function(self.api))
        elif action == "broadcast":
            self.finish(self._broadcast(self.get_argument("text"), self.get_argument("full", "") == "1"))
        elif action == "progress":
            self.finish(_progress(self.api))
        elif action == "calls":
            calls = self.api.calls
            since = max(0, int(self.get_argument("since", "0")))
            records = [
                call_record(self.api, i, c) for i, c in enumerate(calls[since:], since) if c.method != "getUpdates"
            ]
            polls = sum(1 for c in calls[since:] if c.method == "getUpdates")
            self.finish({"calls": records, "next": len(calls), "get_updates": polls, "now": time.monotonic()})
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
            self._push(int(body["chat_id"]), int(body["user_id"]), str(body["text"]))
        elif action == "push_updates":
            body = json.loads(self.request.body or b"{}")
            updates = [pushed_update(self.api, item) for item in body.get("updates", [])]
            for update in updates:
                self.api.push_update(update)
            ids = [u["update_id"] for u in updates]
            queries = [(u.get("callback_query") or {}).get("id") for u in updates]
            self.finish({"ok": True, "update_ids": ids, "query_ids": queries, "at": self.api.now()})
            return
        elif action == "limits":
            body = json.loads(self.request.body or b"{}")
            self.api.limits = bool(body.get("on", True))
            self.api.reset_limits()
        elif action == "drop":
            dropped = self.api.drop_updates() if isinstance(self.api, RecordingBotApi) else 0
            self.finish({"ok": True, "dropped": dropped})
            return
        elif action == "push_many":
            body = json.loads(self.request.body or b"{}")
            messages = [(int(c), int(u), str(t)) for c, u, t in body["messages"]]
            rate = float(body.get("per_second") or 0)
            if rate <= 0:
                for chat_id, user_id, text in messages:
                    self._push(chat_id, user_id, text)
            else:
                task = asyncio.get_running_loop().create_task(self._push_paced(messages, rate))
                _PACED.add(task)
                task.add_done_callback(_PACED.discard)
        else:
            self.send_error(404)
            return
        self.finish({"ok": True})

    def _push(self, chat_id: int, user_id: int, text: str) -> None:
        update = message_update(self.api, chat_id, user(user_id), text)
        PUSH_LOG.append((chat_id, int(update["message"]["message_id"]), time.monotonic()))
        self.api.push_update(update)

    async def _push_paced(self, messages: list[tuple[int, int, str]], rate: float) -> None:
        start = time.monotonic()
        for n, (chat_id, user_id, text) in enumerate(messages):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._push(chat_id, user_id, text)

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


async def _serve_fake(
    conn: Connection, token: str, rate_limit: float | None, stats: StatsFunction, limits: bool = True
) -> None:
    api = await RecordingBotApi(token=token, rate_limit_per_second=rate_limit, limits=limits).start()
    await serve_until_stopped(api, _ControlHandler, conn, stats=stats)


def fake_server_main(
    conn: Connection, token: str, rate_limit: float | None, stats: StatsFunction, limits: bool = True
) -> None:
    """Entry point of the spawned server process."""
    asyncio.run(_serve_fake(conn, token, rate_limit, stats, limits))


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

    def push_messages(self, messages: list[tuple[int, int, str]], per_second: float = 0.0) -> None:
        """Queue (chat id, user id, text) message updates for getUpdates: all at once, or paced."""
        self.control("push_many", "POST", body={"messages": [list(m) for m in messages], "per_second": per_second})

    def progress(self) -> dict[str, Any]:
        return self.control("progress")

    @classmethod
    def start(
        cls,
        token: str = DEFAULT_TOKEN,
        rate_limit: float | None = None,
        stats: StatsFunction = default_stats,
        limits: bool = True,
    ) -> FakeServer:
        """Spawn the server. ``stats`` (a module-level function, run in the server process) makes the
        answer of ``GET /control/stats`` from the fake; ``limits=False`` switches off its flood limits."""
        process, port = spawn_fake(
            fake_server_main, (token, rate_limit, stats, limits), "fake-bot-api", "the fake Bot API"
        )
        return cls(process, port, token)
