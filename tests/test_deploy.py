"""The service files in deploy/ do what the README says: the systemd unit starts `vipbot run` with the config,
restarts after a crash but not after a configuration error (exit 2), waits longer than the bot's own shutdown,
and lets it write only its data folder; the daily backup unit really produces a usable copy; nginx passes only
/telegram, /wechat and /healthz on to the bot (with the client's address in X-Real-IP, which the bot's tornado
server takes), refuses /metrics, and redirects plain HTTP except Let's Encrypt's challenge; logrotate rotates
a log written by a WatchedFileHandler without losing a line.

Each tool (systemd-analyze, nginx, logrotate) is used when installed and the test skips, naming it, when not.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import http.client
import json
import logging
import logging.handlers
import os
import re
import select
import shlex
import shutil
import socket
import sqlite3
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
from tornado.web import RequestHandler

from bot.app.cli import main as cli_main
from bot.app.config import StorageSettings, TelegramSettings
from bot.app.web import WebServer

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
VIPBOT = Path(sys.executable).with_name("vipbot")
WECHAT_STOP_WAIT_SECONDS = 10  # bot/wechat/channel.py stop(): answers in flight get up to 10 s
DOMAIN = "shop.example.com"


# --- systemd -------------------------------------------------------------------------------------------------
def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as systemd reads it: sections -> key -> every value given (keys may repeat), comments and
    blank lines dropped, backslash continuations joined."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: {line!r} is not key=value"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict[str, dict[str, list[str]]], section: str, key: str) -> str:
    values = unit.get(section, {}).get(key, [])
    assert values, f"[{section}] {key}= is not set"
    return values[-1]


def seconds(value: str) -> float:
    """A systemd time span ('30', '30s', '1min 30s', '2m') in seconds."""
    units = {"": 1, "s": 1, "sec": 1, "m": 60, "min": 60, "h": 3600, "ms": 0.001}
    total = 0.0
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[unit]
    return total


@pytest.fixture(scope="module")
def service() -> dict[str, dict[str, list[str]]]:
    return read_unit(DEPLOY / "vipbot.service")


def test_the_service_runs_the_bot_with_its_config_as_its_own_user(service: dict) -> None:
    argv = shlex.split(one(service, "Service", "ExecStart"))
    assert PurePosixPath(argv[0]).name == "vipbot" and argv[0].startswith("/")
    assert argv[1:] == ["run", "--config", "/etc/vipbot/config.yaml"]
    assert one(service, "Service", "Type") == "simple"  # the bot does not call sd_notify
    assert one(service, "Service", "User") == "vipbot"
    assert one(service, "Service", "EnvironmentFile").lstrip("-") == "/etc/vipbot/env"
    assert one(service, "Install", "WantedBy") == "multi-user.target"
    # The venv the unit runs lives in the working directory the README installs to.
    assert argv[0].startswith(one(service, "Service", "WorkingDirectory") + "/")


def test_the_service_restarts_after_a_crash_but_not_after_a_configuration_error(
    service: dict, tmp_path: Path
) -> None:
    assert one(service, "Service", "Restart") in ("on-failure", "always")
    assert seconds(one(service, "Service", "RestartSec")) >= 1
    prevented = one(service, "Service", "RestartPreventExitStatus").split()
    # The exit code the unit counts on: a broken configuration makes `vipbot run` exit 2.
    broken = tmp_path / "config.yaml"
    broken.write_text("timezone: Mars/Olympus\n", encoding="utf-8")
    code = cli_main(["run", "--config", str(broken)])
    assert code == 2
    assert str(code) in prevented


def test_systemd_waits_longer_than_the_bot_takes_to_stop(service: dict) -> None:
    default = TelegramSettings.model_fields["stop_timeout_seconds"].default
    assert one(service, "Service", "KillSignal") == "SIGTERM"  # the signal cli.run_bot handles
    # Telegram's budget, then WeChat answers in flight, then closing the database: SIGKILL only after all that.
    assert seconds(one(service, "Service", "TimeoutStopSec")) > default + WECHAT_STOP_WAIT_SECONDS


def test_the_service_may_write_only_its_data_folder(service: dict) -> None:
    assert one(service, "Service", "NoNewPrivileges") == "yes"
    assert one(service, "Service", "ProtectSystem") == "strict"
    assert one(service, "Service", "ProtectHome") in ("yes", "read-only", "tmpfs")
    assert one(service, "Service", "PrivateTmp") == "yes"
    writable = one(service, "Service", "ReadWritePaths").split()
    # The database at the default storage.path (relative to the working directory) is in a writable folder.
    workdir = PurePosixPath(one(service, "Service", "WorkingDirectory"))
    database = workdir / StorageSettings().path
    assert any(database.is_relative_to(path.lstrip("-")) for path in writable), (database, writable)
    # Behind nginx the bot listens on loopback only: /metrics and X-Real-IP are not reachable from outside.
    assert "VIPBOT_HTTP__HOST=127.0.0.1" in service["Service"]["Environment"]


def test_the_backup_timer_starts_the_backup_daily_and_catches_up_after_downtime() -> None:
    timer = read_unit(DEPLOY / "vipbot-backup.timer")
    assert one(timer, "Timer", "Unit") == "vipbot-backup.service"
    assert (DEPLOY / "vipbot-backup.service").is_file()
    calendar = one(timer, "Timer", "OnCalendar")
    assert calendar in ("daily", "*-*-* 00:00:00") or re.fullmatch(r"\*-\*-\* \d\d:\d\d(:\d\d)?", calendar)
    assert one(timer, "Timer", "Persistent") == "true"
    assert one(timer, "Install", "WantedBy") == "timers.target"


def _systemd_command(line: str, replacements: dict[str, str]) -> list[str]:
    """ExecStart as systemd runs it: specifiers resolved (only %% is used), paths moved to the test's."""
    assert re.search(r"%[^%]", line.replace("%%", "")) is None, f"unexpected specifier in {line!r}"
    line = line.replace("%%", "%")
    for old, new in replacements.items():
        assert old in line, f"{old} no longer in {line!r}"
        line = line.replace(old, new)
    return shlex.split(line)


def test_the_backup_service_writes_a_copy_of_the_live_database_named_by_weekday(
    tmp_path: Path, migrated_db: Path
) -> None:
    unit = read_unit(DEPLOY / "vipbot-backup.service")
    assert one(unit, "Service", "User") == "vipbot"
    assert one(unit, "Service", "Type") == "oneshot"
    database = tmp_path / "data" / "vipbot.db"
    database.parent.mkdir()
    shutil.copy(migrated_db, database)
    with sqlite3.connect(database) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE deploy_probe (x)")  # something the copy must hold
        conn.execute("INSERT INTO deploy_probe VALUES (42)")
    config = tmp_path / "config.yaml"
    config.write_text(f"storage: {{path: {json.dumps(str(database))}}}\n", encoding="utf-8")
    backups = tmp_path / "backups"
    backups.mkdir()
    writable = one(unit, "Service", "ReadWritePaths").split()
    assert "/var/backups/vipbot" in writable and "/opt/vipbot/data" in writable
    command = _systemd_command(
        one(unit, "Service", "ExecStart"),
        {"/opt/vipbot/.venv/bin/vipbot": str(VIPBOT), "/etc/vipbot/config.yaml": str(config),
         "/var/backups/vipbot": str(backups)},
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIPBOT_", "TELEGRAM_", "WECHAT_"))}
    done = subprocess.run(command, cwd=tmp_path, env={**env, "LC_ALL": "C"}, capture_output=True, text=True,
                          timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    weekday = datetime.datetime.now().strftime("%a")
    copies = sorted(p.name for p in backups.iterdir())
    assert copies == [f"vipbot-{weekday}.db"]
    with contextlib.closing(sqlite3.connect(backups / copies[0])) as conn:
        assert conn.execute("SELECT x FROM deploy_probe").fetchall() == [(42,)]
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_finds_nothing_to_complain_about(tmp_path: Path) -> None:
    names = ["vipbot.service", "vipbot-backup.service", "vipbot-backup.timer"]
    for name in names:
        text = (DEPLOY / name).read_text(encoding="utf-8")
        # verify checks that ExecStart's program exists: point it at this checkout's venv.
        (tmp_path / name).write_text(text.replace("/opt/vipbot/.venv/bin/vipbot", str(VIPBOT)), encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", *(str(tmp_path / n) for n in names)], capture_output=True,
                          text=True, timeout=60)  # fmt: skip
    output = done.stdout + done.stderr
    complaints = [line for line in output.splitlines() if "vipbot" in line or str(tmp_path) in line]
    assert done.returncode == 0 and complaints == [], output


# --- nginx ---------------------------------------------------------------------------------------------------
NGINX = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.access(p, os.X_OK)), None)
needs_nginx = pytest.mark.skipif(NGINX is None, reason="nginx is not installed (apt-get install nginx)")
CLIENT_IP = "127.0.0.3"  # the test's client; nginx listens on 127.0.0.2 and reaches the bot from 127.0.0.1


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for DOMAIN (and 127.0.0.2) and its key, as certbot would leave them."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, DOMAIN)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(DOMAIN),
                                                    x509.IPAddress(ipaddress.ip_address("127.0.0.2"))]),
                       critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    chain, private = directory / "fullchain.pem", directory / "privkey.pem"
    chain.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))  # fmt: skip
    return chain, private


@dataclass
class Proxy:
    prefix: Path
    conf: Path
    http_port: int
    https_port: int
    cafile: Path
    access_log: Path
    acme_root: Path
    _pid: int | None = field(default=None)

    def nginx(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert NGINX is not None
        return subprocess.run([NGINX, "-p", str(self.prefix), "-c", str(self.conf), *args], capture_output=True,
                              text=True, timeout=30)  # fmt: skip

    def start(self) -> None:
        done = self.nginx()  # daemonises once its sockets are bound: requests can follow at once
        assert done.returncode == 0, done.stderr
        self._pid = int((self.prefix / "nginx.pid").read_text().strip())

    def stop(self) -> None:
        """Stop nginx and wait until it is gone (so its logs are complete)."""
        if self._pid is None:
            return
        pid, self._pid = self._pid, None
        try:
            handle = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        try:
            self.nginx("-s", "quit")
            select.select([handle], [], [], 10)
        finally:
            os.close(handle)


def site_config(proxy: Proxy, upstream_port: int, chain: Path, key: Path) -> str:
    """deploy/nginx/vipbot.conf with its ports, certificate and folders moved into the test's."""
    text = (DEPLOY / "nginx" / "vipbot.conf").read_text(encoding="utf-8")
    changes = [
        (r"^\s*listen \[::\]:\d+.*$", ""),  # no IPv6 on the test's loopback
        (r"listen 80;", f"listen 127.0.0.2:{proxy.http_port};"),
        (r"listen 443 ssl", f"listen 127.0.0.2:{proxy.https_port} ssl"),
        (r"server 127\.0\.0\.1:8080;", f"server 127.0.0.1:{upstream_port};"),
        (rf"/etc/letsencrypt/live/{re.escape(DOMAIN)}/fullchain\.pem", str(chain)),
        (rf"/etc/letsencrypt/live/{re.escape(DOMAIN)}/privkey\.pem", str(key)),
        (r"/var/www/html", str(proxy.acme_root)),
        (r"/var/log/nginx/vipbot\.access\.log", str(proxy.access_log)),
    ]
    for pattern, replacement in changes:
        text, count = re.subn(pattern, replacement, text, flags=re.MULTILINE)
        assert count, f"{pattern} is no longer in deploy/nginx/vipbot.conf"
    return text


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[Proxy]:
    prefix = tmp_path / "nginx"
    (prefix / "acme" / ".well-known" / "acme-challenge").mkdir(parents=True)
    proxy = Proxy(prefix=prefix, conf=prefix / "nginx.conf", http_port=free_port("127.0.0.2"),
                  https_port=free_port("127.0.0.2"), cafile=prefix / "fullchain.pem",
                  access_log=prefix / "vipbot.access.log", acme_root=prefix / "acme")  # fmt: skip
    yield proxy
    proxy.stop()


def write_config(proxy: Proxy, upstream_port: int) -> None:
    chain, key = self_signed(proxy.prefix)
    (proxy.prefix / "vipbot.conf").write_text(site_config(proxy, upstream_port, chain, key), encoding="utf-8")
    temp = proxy.prefix / "temp"
    temp.mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""  # as root, workers would run as nobody (no tmp access)
    proxy.conf.write_text(
        f"{user}worker_processes 1;\npid {proxy.prefix}/nginx.pid;\nerror_log {proxy.prefix}/error.log warn;\n"
        "events { worker_connections 64; }\n"
        "http {\n"
        f"  access_log off;\n  client_body_temp_path {temp}/body;\n  proxy_temp_path {temp}/proxy;\n"
        f"  fastcgi_temp_path {temp}/fastcgi;\n  uwsgi_temp_path {temp}/uwsgi;\n  scgi_temp_path {temp}/scgi;\n"
        f"  include {proxy.prefix}/vipbot.conf;\n"
        "}\n",
        encoding="utf-8",
    )


@dataclass
class Seen:
    method: str
    uri: str
    remote_ip: str
    headers: dict[str, str]
    body: bytes


class Recorder(RequestHandler):
    """Stands in for the bot's handlers on the bot's own WebServer (tornado, xheaders): records what arrives."""

    def initialize(self, seen: list[Seen]) -> None:
        self.seen = seen

    def _record(self) -> None:
        request = self.request
        self.seen.append(Seen(request.method or "", request.uri or "", request.remote_ip or "",
                              dict(request.headers), request.body))  # fmt: skip
        self.finish(f"bot saw {request.path}")

    def get(self) -> None:
        self._record()

    def post(self) -> None:
        self._record()


def request(proxy: Proxy, method: str, path: str, *, tls: bool = True, body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """One request from CLIENT_IP, to DOMAIN, over HTTPS checked against the test's certificate."""
    if tls:
        context = ssl.create_default_context(cafile=str(proxy.cafile))
        conn: http.client.HTTPConnection = http.client.HTTPSConnection(
            "127.0.0.2", proxy.https_port, context=context, timeout=10, source_address=(CLIENT_IP, 0)
        )
    else:
        conn = http.client.HTTPConnection("127.0.0.2", proxy.http_port, timeout=10, source_address=(CLIENT_IP, 0))
    try:
        conn.request(method, path, body=body, headers={"Host": DOMAIN, **(headers or {})})
        response = conn.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        conn.close()


@needs_nginx
def test_nginx_accepts_the_config(proxy: Proxy) -> None:
    write_config(proxy, upstream_port=free_port("127.0.0.1"))
    done = proxy.nginx("-t")
    assert done.returncode == 0, done.stderr
    assert "syntax is ok" in done.stderr and "test is successful" in done.stderr


@needs_nginx
async def test_nginx_passes_the_webhooks_to_the_bot_and_nothing_else(proxy: Proxy) -> None:
    seen: list[Seen] = []
    web = WebServer("127.0.0.1", 0)
    for path in ("/telegram", "/wechat", "/healthz", "/metrics", "/"):  # /metrics and / would answer if reached
        web.mount(path, Recorder, seen=seen)
    await web.start()
    try:
        write_config(proxy, upstream_port=web.port)
        await asyncio.to_thread(proxy.start)

        # WeChat's URL check: the query (which WeChat signs) arrives whole; the bot sees the client's address.
        status, _, body = await asyncio.to_thread(
            request, proxy, "GET", "/wechat?signature=s1g&timestamp=1&nonce=2&echostr=hello",
            headers={"X-Real-IP": "6.6.6.6"},  # a client cannot pass itself off as someone else
        )
        assert (status, body) == (200, b"bot saw /wechat")
        wechat = seen[-1]
        assert wechat.uri == "/wechat?signature=s1g&timestamp=1&nonce=2&echostr=hello"
        assert wechat.remote_ip == CLIENT_IP
        assert wechat.headers["X-Forwarded-Proto"] == "https" and wechat.headers["Host"] == DOMAIN

        # Telegram's update: the body and the secret header arrive as sent.
        update = json.dumps({"update_id": 1}).encode()
        status, _, body = await asyncio.to_thread(
            request, proxy, "POST", "/telegram", body=update,
            headers={"X-Telegram-Bot-Api-Secret-Token": "abc-123", "Content-Type": "application/json"},
        )  # fmt: skip
        assert (status, body) == (200, b"bot saw /telegram")
        assert seen[-1].body == update and seen[-1].headers["X-Telegram-Bot-Api-Secret-Token"] == "abc-123"

        status, _, _ = await asyncio.to_thread(request, proxy, "GET", "/healthz")
        assert status == 200 and seen[-1].uri == "/healthz"

        before = len(seen)
        for path in ("/metrics", "/", "/wechat/x", "/telegram2", "/healthz/../metrics"):
            status, _, _ = await asyncio.to_thread(request, proxy, "GET", path)
            assert status in (403, 404), path
        assert len(seen) == before  # none of them reached the bot

        # Plain HTTP: Let's Encrypt's challenge is served from the webroot, everything else goes to HTTPS.
        (proxy.acme_root / ".well-known" / "acme-challenge" / "tok3n").write_text("tok3n.key", encoding="utf-8")
        status, _, body = await asyncio.to_thread(
            request, proxy, "GET", "/.well-known/acme-challenge/tok3n", tls=False
        )
        assert (status, body) == (200, b"tok3n.key")
        status, headers, _ = await asyncio.to_thread(request, proxy, "GET", "/wechat?echostr=1", tls=False)
        assert status == 301 and headers["location"] == f"https://{DOMAIN}/wechat?echostr=1"
        assert len(seen) == before

        await asyncio.to_thread(proxy.stop)
        log = proxy.access_log.read_text(encoding="utf-8")
        assert "GET /wechat " in log and "POST /telegram " in log
        assert "s1g" not in log and "echostr" not in log  # WeChat's signatures stay out of nginx's log
    finally:
        await web.stop()


# --- logrotate -----------------------------------------------------------------------------------------------
@pytest.mark.skipif(shutil.which("logrotate") is None, reason="logrotate is not installed")
def test_logrotate_rotates_a_watched_log_without_losing_a_line(tmp_path: Path) -> None:
    import grp
    import pwd

    logs = tmp_path / "log"
    logs.mkdir()
    text = (DEPLOY / "logrotate" / "vipbot").read_text(encoding="utf-8")
    user, group = pwd.getpwuid(os.geteuid()).pw_name, grp.getgrgid(os.getegid()).gr_name
    text, moved = re.subn(r"/var/log/vipbot", str(logs), text)
    text, owners = re.subn(r"\bvipbot vipbot\b", f"{user} {group}", text)
    assert moved and owners == 2, text  # the `su` and `create` lines
    directives = [line.split("#")[0].split() for line in text.splitlines()]
    assert ["copytruncate"] not in directives  # WatchedFileHandler reopens the file by itself
    conf = tmp_path / "logrotate.conf"
    conf.write_text(text, encoding="utf-8")

    path = logs / "vipbot.log"
    handler = logging.handlers.WatchedFileHandler(path, encoding="utf-8")
    logger = logging.getLogger("test_deploy.rotated")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        logger.info("before the rotation")
        done = subprocess.run(["logrotate", "--force", "--state", str(tmp_path / "state"), str(conf)],
                              capture_output=True, text=True, timeout=30)  # fmt: skip
        assert done.returncode == 0, done.stderr
        logger.info("after the rotation")
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert (logs / "vipbot.log.1").read_text(encoding="utf-8") == "before the rotation\n"
    assert path.read_text(encoding="utf-8") == "after the rotation\n"


def test_the_worker_template_is_the_service_with_its_port_from_the_instance_name() -> None:
    """deploy/vipbot@.service (several workers on PostgreSQL) keeps every setting of vipbot.service: only the
    description and the port (the instance name) differ, so the hardening and restart policy cannot drift."""
    single = read_unit(DEPLOY / "vipbot.service")
    worker = read_unit(DEPLOY / "vipbot@.service")
    assert worker["Service"]["Environment"] == [*single["Service"]["Environment"][:1], "VIPBOT_HTTP__PORT=%i",
                                                *single["Service"]["Environment"][1:]]  # fmt: skip
    assert "%i" in one(worker, "Unit", "Description")
    for section in ("Unit", "Service", "Install"):
        keys = set(single[section]) | set(worker[section])
        differ = {k for k in keys if single[section].get(k) != worker[section].get(k)}
        assert differ <= {"Description", "Environment"}, (section, differ)
    assert "1" not in one(worker, "Service", "RestartPreventExitStatus").split()  # a lost lead (exit 1) restarts


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_analyze_verify_accepts_a_worker_instance(tmp_path: Path) -> None:
    text = (DEPLOY / "vipbot@.service").read_text(encoding="utf-8")
    unit = tmp_path / "vipbot@8081.service"
    unit.write_text(text.replace("/opt/vipbot/.venv/bin/vipbot", str(VIPBOT)), encoding="utf-8")
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    output = done.stdout + done.stderr
    complaints = [line for line in output.splitlines() if "vipbot" in line or str(tmp_path) in line]
    assert done.returncode == 0 and complaints == [], output
