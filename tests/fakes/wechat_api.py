"""A fake WeChat API server on 127.0.0.1: hands out access tokens and records customer-service and
template messages; `refuse` makes it answer an errcode for chosen OpenIDs. `answer_text` reads the bot's passive
answer to a pushed message.

The custom menu (menu/create, menu/get) is checked as WeChat checks it: 1-3 buttons, 1-5 sub-buttons each, names
of at most 16 (top level) and 60 (sub-button) UTF-8 bytes, click keys of 1-128 bytes, known button types, and no
``\\uXXXX`` escapes in the body (WeChat refuses those with 40033); a refusal is the real errcode and errmsg.
`refuse_ip` makes cgi-bin/token answer 40164 (the server's IP is not whitelisted), `app_secret` 40125 for any
other secret, and `menu_right = False` 48001 for menu/create (an account without the menu API right)."""

from __future__ import annotations

import json
import secrets
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
    refuse_ip: str = ""
    """When set, cgi-bin/token answers 40164 as WeChat does for a caller outside the IP whitelist, naming this IP."""
    app_secret: str = ""
    """When set, cgi-bin/token answers 40125 (invalid appsecret) for any other secret."""
    menu_right: bool = True
    """False: menu/create answers 48001 (api unauthorized), as for an unverified subscription account."""
    menu: dict[str, Any] | None = None
    """The menu last created (the JSON body as received), None before."""
    menu_requests: list[bytes] = field(default_factory=list)
    """Every menu/create body as it arrived, accepted or not."""
    _issued: set[str] = field(default_factory=set)
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


def _error(errcode: int, errmsg: str) -> dict[str, Any]:
    """WeChat's error answer: the errmsg ends with a request id (`rid: ...`)."""
    rid = "-".join(secrets.token_hex(4) for _ in range(3))
    return {"errcode": errcode, "errmsg": f"{errmsg} rid: {rid}"}


MENU_TYPES = {"click", "view", "miniprogram", "scancode_push", "scancode_waitmsg", "pic_sysphoto",
              "pic_photo_or_album", "pic_weixin", "location_select", "media_id", "article_id", "article_view_limited",
              "view_limited"}  # fmt: skip


def menu_error(body: dict[str, Any]) -> dict[str, Any] | None:
    """The error WeChat answers menu/create with for this body, None when it is a valid menu."""
    buttons = body.get("button")
    if not isinstance(buttons, list) or not 1 <= len(buttons) <= 3:
        return _error(40016, "invalid button size")
    for button in buttons:
        if not isinstance(button, dict):
            return _error(40016, "invalid button size")
        if not 1 <= len(str(button.get("name", "")).encode()) <= 16:
            return _error(40018, "invalid button name size")
        subs = button.get("sub_button")
        if subs:  # a parent: its own type and key are ignored
            if not isinstance(subs, list) or len(subs) > 5:
                return _error(40023, "invalid sub button size")
            for sub in subs:
                if not isinstance(sub, dict):
                    return _error(40023, "invalid sub button size")
                if sub.get("sub_button"):
                    return _error(40022, "invalid sub_menu level")
                if not 1 <= len(str(sub.get("name", "")).encode()) <= 60:
                    return _error(40025, "invalid sub button name size")
                if sub.get("type") not in MENU_TYPES:
                    return _error(40024, "invalid sub button type")
                if sub["type"] == "click" and not 1 <= len(str(sub.get("key", "")).encode()) <= 128:
                    return _error(40026, "invalid sub button key size")
            continue
        if button.get("type") not in MENU_TYPES:
            return _error(40017, "invalid button type")
        if button["type"] == "click" and not 1 <= len(str(button.get("key", "")).encode()) <= 128:
            return _error(40019, "invalid button key size")
    return None


class _Handler(RequestHandler):
    def initialize(self, api: FakeWeChatApi) -> None:
        self.api = api

    def check_xsrf_cookie(self) -> None:
        return None

    def get(self, path: str) -> None:
        if path == "token":
            self.finish(self._token())
            return
        if path == "menu/get":
            if (refused := self._unauthorized()) is not None:
                self.finish(refused)
            elif self.api.menu is None:
                self.finish(_error(46003, "menu no exist"))
            else:  # as WeChat answers it: every button with a sub_button list, empty for plain buttons
                buttons = [{**b, "sub_button": [{**s, "sub_button": []} for s in b.get("sub_button") or []]}
                           for b in self.api.menu["button"]]  # fmt: skip
                self.finish({"menu": {"button": buttons}})
            return
        self.set_status(404)
        self.finish({"errcode": 404})

    def _token(self) -> dict[str, Any]:
        api = self.api
        if self.get_query_argument("grant_type", "") != "client_credential":
            return _error(40002, "invalid grant_type")
        if not self.get_query_argument("appid", ""):
            return _error(41002, "appid missing")
        if api.refuse_ip:
            ip = api.refuse_ip
            return _error(40164, f"invalid ip {ip} ipv6 ::ffff:{ip}, not in whitelist")
        if api.app_secret and self.get_query_argument("secret", "") != api.app_secret:
            return _error(40125, "invalid appsecret")
        api.token_requests += 1
        token = f"TOKEN-{api.token_requests}"
        api._issued.add(token)
        return {"access_token": token, "expires_in": 7200}

    def _unauthorized(self) -> dict[str, Any] | None:
        """WeChat's answer to a call without a valid access token, None when the token is one handed out."""
        token = self.get_query_argument("access_token", "")
        if token == "":
            return _error(41001, "access_token missing")
        if token not in self.api._issued:
            return _error(40001, "invalid credential, access_token is invalid or not latest")
        return None

    def post(self, path: str) -> None:
        if (refused := self._unauthorized()) is not None:
            self.finish(refused)
            return
        if path == "menu/create":
            self.finish(self._create_menu())
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

    def _create_menu(self) -> dict[str, Any]:
        raw = self.request.body
        self.api.menu_requests.append(raw)
        if b"\\u" in raw:  # WeChat wants the characters themselves, never JSON's \\u escapes
            return _error(40033, "invalid charset. please check your request, if include \\uxxxx will create fail!")
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return _error(47001, "data format error")
        if not isinstance(body, dict):
            return _error(47001, "data format error")
        if not self.api.menu_right:
            return _error(48001, "api unauthorized")
        if (refused := menu_error(body)) is not None:
            return refused
        self.api.menu = body
        return {"errcode": 0, "errmsg": "ok"}


def answer_text(body: str, crypto: WeChatCrypto | None = None) -> str:
    """The passive answer's text; '' for 'success' (the answer comes later by customer service)."""
    if body == "success":
        return ""
    if crypto is not None:
        envelope = xmltodict.parse(body)["xml"]
        body = crypto.decrypt_message(body, envelope["MsgSignature"], envelope["TimeStamp"], envelope["Nonce"])
    return str(xmltodict.parse(body)["xml"]["Content"])
