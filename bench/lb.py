"""A real load balancer for the benchmarks: HAProxy (Debian's ``haproxy`` package) on 127.0.0.1 in front of bot
worker processes, started and removed by the benchmark.

``HAProxy(servers, port).start()`` writes a configuration into a temporary folder and runs ``haproxy -db -f``
(in the foreground, as a child process, no daemon, no systemd unit): HTTP mode, round-robin over the servers,
each health-checked with ``GET /healthz`` (status 200) every ``check_interval_ms`` (1 s, 250 ms once a check
failed; an answer may take 5 s; down after 3 failures, up after 1 success: a busy worker stays in). A
connection refused by a server (a dead worker, before its checks failed) is tried again and re-dispatched to
another server (``retries``, ``option redispatch``). There is no per-server connection limit: a request reaches
a worker at once, so the worker's own reply budget (4 s of WeChat's 5) counts from about when the client sent
it, not from when a queue in the balancer let it through. A client that gives up before its request reached a
server has it dropped (``abortonclose``). A stats frontend on another port serves ``/stats;csv``, which
``server_states`` reads. ``stop()`` ends the process and removes the folder.

When ``haproxy`` is not installed, ``HAProxy.available()`` says so with the install command
(``apt-get install -y haproxy``); the benchmark does not install packages itself.
"""

from __future__ import annotations

import csv
import io
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = "HAProxy is not installed: apt-get install -y haproxy (Debian's package; no service needs to run)"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def default_maxconn() -> int:
    """Connections HAProxy may hold: two descriptors each (client and server side) within this process's hard
    limit of open files, which a child cannot raise."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    return 20_000 if hard == resource.RLIM_INFINITY else max(256, (hard - 200) // 2)


@dataclass
class HAProxy:
    servers: list[tuple[str, int]]
    """(name, port) of each backend server on 127.0.0.1."""
    port: int
    """Where the balancer listens on 127.0.0.1."""
    check_interval_ms: int = 1000
    maxconn: int = field(default_factory=lambda: default_maxconn())
    stats_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    folder: Path | None = None

    @staticmethod
    def available() -> str | None:
        """None when ``haproxy`` can be run, else why not (with the install command)."""
        return None if shutil.which("haproxy") else INSTALL_HINT

    def config(self) -> str:
        servers = "\n".join(
            f"    server {name} 127.0.0.1:{port} check inter {self.check_interval_ms}ms fastinter 250ms fall 3 rise 1"
            for name, port in self.servers
        )
        return f"""global
    maxconn {self.maxconn}
    nbthread 1

defaults
    mode http
    timeout connect 2s
    timeout client 60s
    timeout server 60s
    timeout queue 5s
    timeout check 5s
    timeout http-request 10s
    timeout http-keep-alive 60s
    retries 2
    option redispatch
    option abortonclose
    option forwardfor
    maxconn {self.maxconn}

frontend stats
    bind 127.0.0.1:{self.stats_port}
    stats enable
    stats uri /stats
    stats refresh 0

frontend webhooks
    bind 127.0.0.1:{self.port}
    default_backend workers

backend workers
    balance roundrobin
    option httpchk GET /healthz
    http-check expect status 200
{servers}
"""

    def start(self, timeout: float = 20.0) -> HAProxy:
        """Write the configuration, check it, start the process and wait (bounded) until it listens."""
        self.folder = Path(tempfile.mkdtemp(prefix="vipbot-haproxy-"))
        path = self.folder / "haproxy.cfg"
        path.write_text(self.config(), encoding="utf-8")
        checked = subprocess.run(["haproxy", "-c", "-q", "-f", str(path)], capture_output=True, text=True)
        if checked.returncode != 0:
            raise RuntimeError(f"haproxy refused the configuration: {checked.stderr or checked.stdout}")
        log = (self.folder / "haproxy.log").open("ab")
        self.proc = subprocess.Popen(["haproxy", "-db", "-f", str(path)], stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, cwd=self.folder)  # fmt: skip
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"haproxy exited with {self.proc.returncode}: {self.log_text()[-1000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"haproxy did not listen on 127.0.0.1:{self.port} within {timeout:.0f} s")

    def log_text(self) -> str:
        try:
            return (self.folder / "haproxy.log").read_text(errors="replace") if self.folder else ""
        except OSError:
            return ""

    def server_states(self) -> dict[str, str]:
        """Backend server name -> its state as HAProxy sees it (UP, DOWN, ``UP 1/2``, ...)."""
        url = f"http://127.0.0.1:{self.stats_port}/stats;csv"
        with urllib.request.urlopen(url, timeout=5) as response:
            text = response.read().decode()
        rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
        return {r["svname"]: r["status"] for r in rows if r["pxname"] == "workers" and r["svname"] != "BACKEND"}

    def wait_up(self, names: list[str], timeout: float = 30.0) -> None:
        """Wait (bounded) until HAProxy's health checks see every server in `names` UP."""
        deadline = time.monotonic() + timeout
        states: dict[str, str] = {}
        while time.monotonic() < deadline:
            states = self.server_states()
            if all(states.get(n) == "UP" for n in names):
                return
            time.sleep(0.1)
        raise RuntimeError(f"HAProxy's health checks did not see the workers up within {timeout:.0f} s: {states}")

    def stop(self) -> None:
        """End the process (SIGTERM, SIGKILL after 10 s) and remove its folder."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
