"""The process's one HTTP server (tornado): /telegram, /wechat and /healthz are mounted on it.

Every webhook handler rejects what it cannot trust with a 4xx (403 for a bad signature or secret, 400 for a
malformed body, 413 for an oversized one) before anything reaches a handler of the bot.

Nothing logs a query string: WeChat puts its signatures there (`signature`, `msg_signature`), and in plain
mode a signed URL is all a forger needs. The access log (`tornado.access`) and tornado's own error lines
show the method, the path and the client, never the query.
"""

from __future__ import annotations

import logging
import os
import socket
from types import TracebackType
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.log import access_log, app_log, gen_log
from tornado.routing import Rule
from tornado.web import Application, HTTPError, RequestHandler, URLSpec

log = logging.getLogger(__name__)

DEFAULT_MAX_BODY = 64 * 1024


def request_summary(handler: RequestHandler) -> str:
    """'POST /wechat (1.2.3.4)': the request without its query string (which may carry signatures)."""
    return f"{handler.request.method} {handler.request.path} ({handler.request.remote_ip})"


def log_request(handler: RequestHandler) -> None:
    """The access log line of every request: status, method, path (no query), client, time."""
    status = handler.get_status()
    method = access_log.info if status < 400 else access_log.warning if status < 500 else access_log.error
    method("%d %s %.2fms", status, request_summary(handler), 1000.0 * handler.request.request_time())


class QuietHandler(RequestHandler):
    """Base of every handler on the server: tornado's error lines show the path, never the query."""

    def _request_summary(self) -> str:
        return request_summary(self)

    def log_exception(
        self, typ: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        # tornado's own version prints the request's repr, URI (with the query) included.
        if isinstance(value, HTTPError):
            if value.log_message:
                gen_log.warning("%d %s: %s", value.status_code, request_summary(self), value.get_message())
        else:
            app_log.error("Uncaught exception %s", request_summary(self), exc_info=(typ, value, tb))  # type: ignore[arg-type]


class LimitedHandler(QuietHandler):
    """Base for webhook handlers: no cookies, and a body over `max_body` is refused with 413."""

    def check_xsrf_cookie(self) -> None:  # webhooks authenticate by signature or secret, not cookies
        return None

    def prepare(self) -> None:
        if len(self.request.body or b"") > self.max_body:
            self.set_status(413)
            self.finish({"ok": False, "error": "body too large"})


class CannotListen(OSError):
    """The HTTP server's address is taken (another process, or one still stopping) or not this machine's."""


class WebServer:
    def __init__(self, listen: str, port: int, max_body: int = DEFAULT_MAX_BODY) -> None:
        self.listen = listen
        self.port = port
        self.max_body = max_body
        self._routes: list[Rule] = []
        self._server: HTTPServer | None = None

    def mount(self, pattern: str, handler: type, **kwargs: Any) -> None:
        if self._server is not None:
            raise RuntimeError("routes must be mounted before the server starts")
        if issubclass(handler, LimitedHandler):
            kwargs["max_body"] = self.max_body
        self._routes.append(URLSpec(pattern, handler, kwargs))

    async def start(self) -> None:
        app = Application(self._routes, log_function=log_request)
        # Bodies a little over the limit get a proper 413 from BodyLimit; far larger ones are cut off.
        self._server = HTTPServer(app, max_body_size=self.max_body * 4, xheaders=True)
        try:
            sockets = [socket.create_server((self.listen, self.port), reuse_port=False, backlog=4096)]
        except OSError as exc:
            raise CannotListen(f"cannot listen on {self.listen}:{self.port} (http.host, http.port):"
                               f" {os.strerror(exc.errno) if exc.errno else exc}") from exc  # fmt: skip
        sockets[0].setblocking(False)
        self.port = sockets[0].getsockname()[1]
        self._server.add_sockets(sockets)
        log.info("web server listening on %s:%s", self.listen, self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            await self._server.close_all_connections()
            self._server = None
