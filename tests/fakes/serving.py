"""Serving a fake platform API on 127.0.0.1 with tornado: start on a bound socket, stop with its connections."""

from __future__ import annotations

import socket

from tornado.httpserver import HTTPServer
from tornado.web import Application


def serve(app: Application, sock: socket.socket) -> tuple[HTTPServer, int]:
    """Serve `app` on the bound, listening `sock`; the server and the port it got."""
    sock.setblocking(False)
    server = HTTPServer(app)
    server.add_sockets([sock])
    return server, sock.getsockname()[1]


async def close(server: HTTPServer | None) -> None:
    """Stop taking connections and close the open ones (a fake that never started has nothing to close)."""
    if server is not None:
        server.stop()
        await server.close_all_connections()
