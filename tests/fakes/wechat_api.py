"""A fake WeChat API server on 127.0.0.1: hands out access tokens and records customer-service and
template messages; `refuse` makes it answer an errcode for chosen OpenIDs. `answer_text` reads the bot's passive
answer to a pushed message."""

from __future__ import annotations

import json
import socket
from dataclasses import dataclass, field
from typing import Any

import xmltodict
from tornado.httpserver import HTTPServer
from tornado.web import Application, RequestHandler
from wechatpy.crypto import WeChatCrypto

from tests.fakes.serving import close, serve


@dataclass
class FakeWeChatApi:
    port: int = 0
    token_requests: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)
    templates: list[dict[str, Any]] = field(default_factory=list)
    refuse: dict[str, int] = field(default_factory=dict)
    """OpenID -> errcode to answer for customer-service messages to it."""
    _server: HTTPServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/cgi-bin/"

    async def start(self) -> FakeWeChatApi:
        app = Application([(r"/cgi-bin/(.*)", _Handler, {"api": self})])
        self._server, self.port = serve(app, socket.create_server(("127.0.0.1", 0)))
        return self

    async def stop(self) -> None:
        await close(self._server)

    def texts_to(self, openid: str) -> list[str]:
        return [m["text"]["content"] for m in self.messages if m.get("touser") == openid]


class _Handler(RequestHandler):
    def initialize(self, api: FakeWeChatApi) -> None:
        self.api = api

    def check_xsrf_cookie(self) -> None:
        return None

    def get(self, path: str) -> None:
        if path == "token":
            self.api.token_requests += 1
            self.finish({"access_token": f"TOKEN-{self.api.token_requests}", "expires_in": 7200})
            return
        self.set_status(404)
        self.finish({"errcode": 404})

    def post(self, path: str) -> None:
        if self.get_query_argument("access_token", "") == "":
            self.finish({"errcode": 41001, "errmsg": "access_token missing"})
            return
        body = json.loads(self.request.body or b"{}")
        if path == "message/custom/send":
            code = self.api.refuse.get(body.get("touser", ""))
            if code:
                self.finish({"errcode": code, "errmsg": "refused by the fake"})
                return
            self.api.messages.append(body)
        elif path == "message/template/send":
            self.api.templates.append(body)
        self.finish({"errcode": 0, "errmsg": "ok"})


def answer_text(body: str, crypto: WeChatCrypto | None = None) -> str:
    """The passive answer's text; '' for 'success' (the answer comes later by customer service)."""
    if body == "success":
        return ""
    if crypto is not None:
        envelope = xmltodict.parse(body)["xml"]
        body = crypto.decrypt_message(body, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"])
    return str(xmltodict.parse(body)["xml"]["Content"])
