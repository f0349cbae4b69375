"""The fake WeChat API of ``tests/fakes/wechat_api.py`` in its own process, for the benchmarks that post to a real
bot's ``/wechat`` (``bench/webhooks.py``, ``bench/scale_out.py``): it issues access tokens and receives the
customer-service messages that carry answers which missed WeChat's reply window.

Its control API under ``/control/``: ``GET stats`` (messages, distinct recipients, token requests, the three
most common texts), ``GET count`` (messages and token requests, cheap to poll), ``GET messages`` (every
message as [OpenID, text]), ``POST reset`` (forget the messages), ``POST stop``.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from multiprocessing.connection import Connection

from bench.fake_server import ControlHandler, SpawnedFake, serve_until_stopped, spawn_fake
from tests.fakes.wechat_api import FakeWeChatApi


class _WeChatControl(ControlHandler):
    def get(self, action: str) -> None:
        messages = self.api.messages
        if action == "stats":
            texts = Counter(str(m.get("text", {}).get("content", "")) for m in messages)
            self.finish({"messages": len(messages), "recipients": len({m.get("touser") for m in messages}),
                         "token_requests": self.api.token_requests, "texts": texts.most_common(3)})  # fmt: skip
        elif action == "count":
            self.finish({"messages": len(messages), "token_requests": self.api.token_requests})
        elif action == "messages":
            self.finish({"messages": [[str(m.get("touser", "")), str(m.get("text", {}).get("content", ""))]
                                      for m in messages]})  # fmt: skip
        else:
            self.send_error(404)

    def post(self, action: str) -> None:
        if action == "stop":
            self.stop.set()
        elif action == "reset":
            self.api.messages.clear()
        else:
            self.send_error(404)
            return
        self.finish({"ok": True})


async def _serve_wechat(conn: Connection) -> None:
    await serve_until_stopped(await FakeWeChatApi().start(), _WeChatControl, conn)


def wechat_fake_main(conn: Connection) -> None:
    """Entry point of the spawned fake WeChat API process."""
    asyncio.run(_serve_wechat(conn))


class WeChatFake(SpawnedFake):
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cgi-bin/"

    @classmethod
    def start(cls) -> WeChatFake:
        return cls(*spawn_fake(wechat_fake_main, (), "fake-wechat-api", "the fake WeChat API"))

    def received(self) -> dict[str, list[str]]:
        """OpenID -> the customer-service texts sent to it, in order."""
        out: dict[str, list[str]] = {}
        for openid, text in self.control("messages")["messages"]:
            out.setdefault(openid, []).append(text)
        return out
