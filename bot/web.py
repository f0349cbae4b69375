"""The process's one HTTP server (tornado): /telegram, /wechat and /healthz are mounted on it.

Every webhook handler rejects what it cannot trust with a 4xx (403 for a bad signature or secret, 400 for a
malformed body, 413 for an oversized one) before anything reaches a handler of the bot.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.routing import _RuleList
from tornado.web import Application, RequestHandler

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 64 * 1024


class LimitedHandler(RequestHandler):
    """Base for webhook handlers: no cookies, and a body over `max_body` is refused with 413."""

    def check_xsrf_cookie(self) -> None:  # webhooks authenticate by signature or secret, not cookies
        return None

    def prepare(self) -> None:
        if len(self.request.body or b"") > self.max_body:
            self.set_status(413)
            self.finish({"ok": False, "error": "body too large"})


class WebServer:
    def __init__(self, listen: str, port: int, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.listen = listen
        self.port = port
        self.max_body = max_body
        self._routes: _RuleList = []
        self._server: HTTPServer | None = None

    def mount(self, pattern: str, handler: type, **kwargs: Any) -> None:
        if self._server is not None:
            raise RuntimeError("routes must be mounted before the server starts")
        if issubclass(handler, LimitedHandler):
            kwargs["max_body"] = self.max_body
        self._routes.append((pattern, handler, kwargs))

    async def start(self) -> None:
        app = Application(self._routes)
        # Bodies a little over the limit get a proper 413 from BodyLimit; far larger ones are cut off.
        self._server = HTTPServer(app, max_body_size=self.max_body * 4, xheaders=True)
        sockets = [socket.create_server((self.listen, self.port), reuse_port=False, backlog=4096)]
        sockets[0].setblocking(False)
        self.port = sockets[0].getsockname()[1]
        self._server.add_sockets(sockets)
        log.info("web server listening on %s:%s", self.listen, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None
