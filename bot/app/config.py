"""Configuration: `config.yaml`, overridden by the environment, validated at start-up.

Precedence, highest first: `VIPBOT_<SECTION>__<KEY>` variables, the well-known secret variables
(`TELEGRAM_BOT_TOKEN`), the YAML file, then the defaults below.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
from importlib.util import find_spec
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from apscheduler.triggers.cron import CronTrigger
from pydantic import Field, PrivateAttr, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from handlers.core.i18n import Catalog
from handlers.core.roles import Role
from handlers.core.rules import Rules, RuleSections, StrictModel
from storage.db.database import DEBUG_LOOP_STATEMENT_MS, READERS, is_file_path
from storage.db.open import WRITERS as PG_WRITERS
from storage.db.open import Engine, Location, parse_url, redacted_url, same_file

DEFAULT_CONFIG = Path("config.yaml")
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
"""What `telegram.proxy` may be (httpx's proxy schemes)."""


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


class StorageSettings(StrictModel):
    url: str = ""
    """Which database: `postgresql://user:password@host:5432/name` (or `postgres://`) for PostgreSQL,
    `sqlite:///data/vipbot.db` (relative; `sqlite:////srv/vipbot.db` absolute) for SQLite; empty: SQLite at
    `path`."""
    path: str = Field("data/vipbot.db", min_length=1)
    """The SQLite file when `url` names none."""
    readers: int = Field(READERS, ge=1, le=64)
    """Reader connections: reads (reports, exports, `/points`) that run at the same time, each on its own thread."""
    writers: int = Field(PG_WRITERS, ge=1, le=256)
    """PostgreSQL only: connections for transactions, i.e. updates handled at the same time (SQLite has one
    writer)."""
    loop_statement_ms: int | None = Field(None, ge=0)
    """A statement not marked bulk that runs longer on the event loop fails (SlowStatementError); 0 = never,
    unset = only with `log_level: DEBUG` (DEBUG_LOOP_STATEMENT_MS)."""
    _location: Location = PrivateAttr(default_factory=lambda: Location("sqlite"))

    def loop_statement_limit(self, *, debug: bool) -> int | None:
        """The limit for `Database.open(loop_statement_ms=...)`: None when the guard is off."""
        limit = DEBUG_LOOP_STATEMENT_MS if self.loop_statement_ms is None and debug else self.loop_statement_ms
        return limit or None

    @field_validator("path")
    @classmethod
    def _a_file(cls, value: str) -> str:
        if not is_file_path(value):
            raise ValueError("must be a file path: the bot's reader and writer connections share the file")
        return value

    @field_validator("url")
    @classmethod
    def _a_database_url(cls, value: str) -> str:
        value = value.strip()
        parse_url(value)  # a ValueError says what is wrong (never the password)
        return value

    @model_validator(mode="after")
    def _one_sqlite_file(self) -> StorageSettings:
        location = parse_url(self.url)
        if location.sqlite_path and "path" in self.model_fields_set and not same_file(location.sqlite_path, self.path):
            raise ValueError(
                f"url names the SQLite file {location.sqlite_path} but path names {self.path}: set only one of them"
                " (or the same file in both)"
            )
        if location.engine == "postgresql" and find_spec("asyncpg") is None:
            raise ValueError("url names a PostgreSQL database, but asyncpg is not installed:"
                             " pip install 'vipbot[postgres]'")
        self._location = location
        return self

    @property
    def engine(self) -> Engine:
        """"sqlite" or "postgresql", from `url`."""
        return self._location.engine

    @property
    def sqlite_path(self) -> str:
        """The SQLite file (the one `url` names, else `path`); also where exports are kept beside, on either
        engine."""
        return self._location.sqlite_path or self.path

    @property
    def where(self) -> str:
        """The database for messages and logs: the SQLite file, or the PostgreSQL URL without its password."""
        return redacted_url(self.url) if self.engine == "postgresql" else self.sqlite_path


class HttpSettings(StrictModel):
    """The one HTTP server for webhooks (Telegram at /telegram, WeChat at /wechat) and /healthz."""

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    monitoring: bool = False
    """Start the server for /healthz and /metrics even when no webhook needs it (Telegram by polling)."""
    metrics_from: list[str] = Field(default_factory=lambda: ["127.0.0.1/32", "::1/128"])
    """Networks (CIDR) that may read /metrics (and /healthz?detail=1); everyone else gets 403. Behind a
    reverse proxy both the connection's address and the client the proxy reports must be in one of them."""

    @field_validator("metrics_from")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError as exc:
                raise ValueError(f"{entry!r} is not an IP network (e.g. 10.0.0.0/8 or 127.0.0.1/32)") from exc
        return value


def webhook_secret_of(token: str) -> str:
    """The webhook secret derived from a bot token: unguessable without the token, the same in every process."""
    return hashlib.sha256(b"vipbot telegram webhook secret\0" + token.encode()).hexdigest()


class WebhookSettings(StrictModel):
    url: str = ""
    """Public HTTPS URL Telegram posts to (ending in /telegram); empty means long polling."""
    secret_token: SecretStr = SecretStr("")
    """Telegram sends it with every update; empty with a URL set: a new random one each start (see below)."""
    _generated: bool = PrivateAttr(False)

    @field_validator("secret_token")
    @classmethod
    def _secret_chars(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and (len(raw) > 256 or not all(c.isascii() and (c.isalnum() or c in "_-") for c in raw)):
            raise ValueError("secret_token must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return value

    @model_validator(mode="after")
    def _never_without_secret(self) -> WebhookSettings:
        """A webhook never accepts unauthenticated posts: with no secret configured, one is generated here
        (registered with setWebhook at start, so Telegram sends it; every post without it gets 403). With a bot
        token, `TelegramSettings` replaces it by one derived from the token, the same in every worker process."""
        if self.url and not self.secret_token.get_secret_value():
            self.secret_token = SecretStr(secrets.token_urlsafe(32))
            self._generated = True
        return self

    @property
    def secret_generated(self) -> bool:
        """The secret was generated at start-up (none configured), not read from the configuration."""
        return self._generated


class TelegramSettings(StrictModel):
    token: SecretStr = SecretStr("")
    base_url: str = "https://api.telegram.org/bot"
    """Where the Bot API is: a self-hosted Bot API server is ``http://host:8081/bot``."""
    base_file_url: str = ""
    """Where files are downloaded from; empty: from base_url (``…/bot`` becomes ``…/file/bot``), right for
    api.telegram.org and a self-hosted server alike."""
    proxy: str = ""
    """Outgoing proxy for every call to the Bot API, polling included, for a host that cannot reach Telegram
    directly (mainland China): ``http://127.0.0.1:7890``, ``socks5://user:password@host:1080`` (socks needs
    ``python-telegram-bot[socks]``). Empty: none, though HTTPS_PROXY / ALL_PROXY in the environment still apply."""
    command_menus: bool = True
    """Register the "/" command menus per language and scope at start (see bot.telegram.menus); False leaves
    them as set by hand in @BotFather."""
    groups: list[int] = Field(default_factory=list)
    """Chat ids of the VIP groups. The bot serves no other group, and none while this is empty: a command
    sent in an unlisted group is answered (at most once an hour) with its id and how to list it. Admins of
    these groups get the role `staff.group_admins` names (none by default); owning any other group gives no
    rights."""
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)
    rate_limiter: bool = True
    """Keep under Telegram's flood limits. False lifts them: only for benchmarks against a fake server."""
    concurrent_updates: int = Field(8, ge=1, le=256)
    """Updates handled at once (each one is a short database transaction; sending never holds one)."""
    prefetch: int = Field(500, ge=10, le=10000)
    """Updates stored but not yet handled beyond which polling stops fetching (Telegram keeps the rest)."""
    stop_timeout_seconds: float = Field(8.0, gt=0, le=60)
    """On SIGTERM: how long to finish the updates in hand and the messages in flight before exiting."""
    admin_cache_seconds: int = Field(300, ge=0)
    member_cache_seconds: int = Field(60, ge=0)
    """How long 'is this user in a VIP group' (asked for claims from private chats) is remembered."""

    @model_validator(mode="after")
    def _shared_webhook_secret(self) -> TelegramSettings:
        """No secret configured: every worker derives the same one from the token (a random one per process
        would make the workers refuse each other's posts, since only the leader registers its own)."""
        token = self.token.get_secret_value().strip()
        if self.webhook.secret_generated and token:
            self.webhook.secret_token = SecretStr(webhook_secret_of(token))
        return self

    @field_validator("proxy")
    @classmethod
    def _proxy_url(cls, value: str) -> str:
        """A proxy httpx can use, refused here rather than at the first call (the URL may hold a password: the
        messages never repeat it)."""
        value = value.strip()
        if not value:
            return ""
        parts = urlsplit(value)
        scheme = parts.scheme.lower() if "://" in value else ""
        if scheme not in PROXY_SCHEMES:
            raise ValueError(
                f"the proxy URL must start with {', '.join(s + '://' for s in PROXY_SCHEMES)}"
                f" ({f'not {scheme}://' if scheme else 'it has no scheme'}), e.g. http://127.0.0.1:7890"
            )
        try:
            port = parts.port
        except ValueError:
            raise ValueError("the proxy URL has an invalid port, e.g. http://127.0.0.1:7890") from None
        if not parts.hostname or (port is None and parts.netloc.endswith(":")):
            raise ValueError("the proxy URL needs a host and port, e.g. http://127.0.0.1:7890")
        if scheme.startswith("socks") and find_spec("socksio") is None:
            raise ValueError("a socks5 proxy needs the socksio package: pip install 'python-telegram-bot[socks]'")
        return value


class DeliverySettings(StrictModel):
    """How messages leave (Telegram allows 30 messages/s overall, 20/minute into one group, about 1/s
    into one private chat; the defaults keep a margin under each)."""

    telegram_per_second: float = Field(25, gt=0, le=30)
    group_per_minute: float = Field(18, gt=0, le=20)
    """Messages and edits into one group in any 60 s."""
    group_gap_seconds: float = Field(1.5, ge=1.0, le=60)
    """Least time between two messages or edits into one group."""
    board_reserve_per_minute: float = Field(3, ge=0)
    """Turns a minute the check-in board leaves to the group's other messages (a sale's post, staff answers):
    in a rush the board is edited every 60 / (group_per_minute - this) seconds, whatever else is waiting."""
    private_gap_seconds: float = Field(1.1, ge=1.0)
    """Seconds between two messages into one private chat."""
    coalesce_seconds: float = Field(0.4, ge=0, le=5)
    """Group replies that arrive within this window (or wait for the group's turn together) share a message."""
    max_attempts: int = Field(5, ge=1)
    retry_base_seconds: float = Field(2.0, gt=0)
    """Backoff after a network error: base, 2 x base, 4 x base, ... (at most 5 minutes)."""
    concurrency: int = Field(32, ge=1, le=512)


MENU_BUTTONS, MENU_SUB_BUTTONS = 3, 5
"""WeChat's custom menu (menu/create): 1-3 top-level buttons, each opening at most 5 sub-buttons."""
MENU_NAME_BYTES, MENU_SUB_NAME_BYTES, MENU_KEY_BYTES = 16, 60, 128
"""UTF-8 bytes of a top-level button's name (WeChat shows 4 Chinese characters), a sub-button's name, a key."""
MENU_MORE = "更多"
"""The parent of the keys beyond the second when the menu is laid out automatically."""


class WeChatMenuGroup(StrictModel):
    """A top-level menu button that opens sub-buttons: the `name` shown and the `wechat.menu` keys under it."""

    name: str
    keys: list[str] = Field(min_length=1)


class WeChatSettings(StrictModel):
    """A WeChat Official Account (公众号); enabled when app_id and token are set."""

    app_id: str = ""
    app_secret: SecretStr = SecretStr("")
    token: SecretStr = SecretStr("")
    encoding_aes_key: SecretStr = SecretStr("")
    mode: Literal["plain", "compatible", "safe"] = "plain"
    """Message encryption as set on the WeChat console (明文 / 兼容 / 安全模式); safe is the one that signs the body."""
    timestamp_tolerance_seconds: int = Field(300, ge=30, le=3600)
    """Posts whose signed timestamp is further than this from the bot's clock are refused (replays)."""
    reply_budget_seconds: float = Field(4.0, gt=0, lt=5)
    """Answer in the HTTP response when ready within this; later answers go through the customer-service API."""
    api_base_url: str = "https://api.weixin.qq.com/cgi-bin/"
    window_hours: int = Field(48, ge=1)
    window_messages: int = Field(5, ge=1)
    template_id: str = ""
    """Template message used for pushes outside the customer-service window (verified service accounts)."""
    per_second: float = Field(20, gt=0)
    menu: dict[str, str] = Field(
        default_factory=lambda: {
            "CHECKIN": "签到", "POINTS": "积分", "ME": "我的", "EVENTS": "活动", "REWARDS": "积分商城",
            "POLLS": "调查", "HELP": "帮助",
        }
    )  # fmt: skip
    """Menu CLICK EventKey -> the text it stands for (also the button's name in the pushed menu)."""
    menu_layout: list[str | WeChatMenuGroup] = Field(default_factory=list)
    """Where `vipbot wechat menu` puts the `menu` keys: top-level entries, each a key (a button) or
    ``{name: 更多, keys: [...]}`` (a button opening up to 5). Empty: every key as a button when there are at
    most 3, else the first two as buttons and the rest (at most 5) under 更多."""
    server_url: str = ""
    """The URL entered in the WeChat console (服务器地址), e.g. https://shop.example/wechat: `vipbot doctor`
    checks that it answers WeChat's signature check (WeChat accepts only ports 80 and 443)."""

    @property
    def enabled(self) -> bool:
        return bool(self.app_id and self.token.get_secret_value())

    def menu_tree(self) -> list[str | WeChatMenuGroup]:
        """The menu as pushed: `menu_layout`, or the automatic layout of `menu` when that is empty."""
        if self.menu_layout:
            return list(self.menu_layout)
        keys = list(self.menu)
        if len(keys) <= MENU_BUTTONS:
            return keys
        return [*keys[: MENU_BUTTONS - 1], WeChatMenuGroup(name=MENU_MORE, keys=keys[MENU_BUTTONS - 1 :])]

    def _menu_problems(self) -> list[str]:
        tree, problems, seen = self.menu_tree(), [], set()
        if len(tree) > MENU_BUTTONS:
            problems.append(f"{len(tree)} top-level buttons; WeChat allows at most {MENU_BUTTONS}")

        def name_problem(name: str, limit: int, what: str) -> None:
            size = len(name.encode())
            if not 1 <= size <= limit:
                problems.append(f"{what} name {name!r} is {size} bytes; WeChat allows 1-{limit} (UTF-8, where a "
                                "Chinese character takes 3)")  # fmt: skip

        def button_problem(key: str, limit: int, what: str) -> None:
            if key not in self.menu:
                problems.append(f"key {key!r} is not in wechat.menu")
                return
            if key in seen:
                problems.append(f"key {key!r} is in the menu twice")
            seen.add(key)
            if not 1 <= len(key.encode()) <= MENU_KEY_BYTES:
                problems.append(f"key {key!r} is {len(key.encode())} bytes; WeChat allows 1-{MENU_KEY_BYTES}")
            name_problem(self.menu[key], limit, what)

        for entry in tree:
            if isinstance(entry, str):
                button_problem(entry, MENU_NAME_BYTES, "button")
                continue
            name_problem(entry.name, MENU_NAME_BYTES, "button")
            if len(entry.keys) > MENU_SUB_BUTTONS:
                problems.append(f"{entry.name!r} opens {len(entry.keys)} sub-buttons; WeChat allows at most "
                                f"{MENU_SUB_BUTTONS}")  # fmt: skip
            for key in entry.keys:
                button_problem(key, MENU_SUB_NAME_BYTES, f"sub-button (under {entry.name!r})")
        return problems

    @model_validator(mode="after")
    def _menu_fits_wechat(self) -> WeChatSettings:
        """The pushed menu must be one WeChat accepts: refused here, at load, with what to change."""
        if problems := self._menu_problems():
            where = ("wechat.menu_layout" if self.menu_layout else
                     f"wechat.menu (laid out automatically: the first {MENU_BUTTONS - 1} keys as buttons, the rest "
                     f"under {MENU_MORE}; set wechat.menu_layout to choose)")  # fmt: skip
            raise ValueError(f"{where}: " + "; ".join(problems))
        return self

    @model_validator(mode="after")
    def _safe_mode_needs_key(self) -> WeChatSettings:
        if self.enabled and self.mode != "plain" and len(self.encoding_aes_key.get_secret_value()) != 43:
            raise ValueError(
                "wechat.encoding_aes_key must be the 43-character EncodingAESKey for compatible or safe mode"
            )
        return self


def _with_roles(value: Any) -> Any:
    """A mapping id -> role as it is; a plain list (the shape before roles) as each id -> owner, so a file
    written before roles keeps every right it gave; anything else is left for pydantic to refuse."""
    if isinstance(value, list | tuple | set):
        return dict.fromkeys(value, Role.OWNER)
    return value


class StaffSettings(StrictModel):
    """Who is staff, with which role (`owner`, `manager` or `cashier`; see handlers.core.roles), per channel:
    ``telegram: {123456: owner, 234567: cashier}``. A plain list (``telegram: [123456]``) still works and makes
    each one an owner, as every listed person could do everything before roles existed."""

    telegram: dict[int, Role] = Field(default_factory=dict)
    """Telegram user ids -> role."""
    wechat: dict[str, Role] = Field(default_factory=dict)
    """OpenIDs of staff on WeChat -> role."""
    telegram_chat: int | None = None
    """Chat where staff are told about late, skipped or failed pushes (a staff group or a user id)."""
    console: dict[str, Role] = Field(default_factory=lambda: {"店长": Role.OWNER})
    """Names that play staff in `vipbot console` -> role."""
    group_admins: Role | None = None
    """The role the admins of the listed VIP groups (telegram.groups) get, when they are not listed above; none
    by default: administering the group gives no staff rights unless this says so."""

    @field_validator("telegram", "wechat", "console", mode="before")
    @classmethod
    def _plain_lists_are_owners(cls, value: Any) -> Any:
        return _with_roles(value)


class ConsoleSettings(StrictModel):
    user: str = Field("小王", min_length=1, max_length=64)


class Settings(RuleSections, BaseSettings):  # the programme's rules are top-level sections of the file
    model_config = SettingsConfigDict(
        env_prefix="VIPBOT_", env_nested_delimiter="__", extra="forbid", case_sensitive=False
    )

    timezone: str = "Asia/Shanghai"
    locale: Literal["zh_CN", "en"] = "zh_CN"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_file: str = ""
    """Write the log of `vipbot run` to this file instead of stderr, reopened when logrotate moves it
    (deploy/logrotate/vipbot); empty: stderr (under systemd: the journal, which rotates itself)."""
    storage: StorageSettings = Field(default_factory=StorageSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    wechat: WeChatSettings = Field(default_factory=WeChatSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    staff: StaffSettings = Field(default_factory=StaffSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    delivery: DeliverySettings = Field(default_factory=DeliverySettings)
    messages: dict[str, str] = Field(default_factory=dict)
    """Overrides of message-catalog texts by key, e.g. ``checkin.done``."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The YAML file arrives as init arguments; the environment overrides it.
        return env_settings, init_settings

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {value!r} (use an IANA name such as Asia/Shanghai)") from exc
        return value

    @model_validator(mode="after")
    def _rules_valid(self) -> Settings:
        Catalog(self.locale, self.messages)  # unknown message keys fail here, at start-up
        survey = self.polls.survey
        try:
            CronTrigger(day=survey.day, hour=survey.hour, minute=survey.minute, timezone=self.zone)
        except ValueError as exc:
            raise ValueError(f"polls.survey.day {survey.day!r} is not a cron day such as '1st mon' or '15'") from exc
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def rules(self) -> Rules:
        """The handlers' view: the rule sections alone (the same, already validated objects), no secret."""
        return Rules.model_construct(**{name: getattr(self, name) for name in RuleSections.model_fields})

    @property
    def telegram_token(self) -> str:
        return self.telegram.token.get_secret_value().strip()


def _read_yaml(path: Path) -> dict[str, Any]:
    """The file's mapping, or a ConfigError naming the file. (pydantic-settings' YamlConfigSettingsSource
    takes its path from the class's model_config, not per call, and fails on a top-level list with a bare
    ValueError, so the file is read here.)"""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys")
    return data


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: {exc.error_count()} invalid setting(s):"]
    for error in exc.errors():
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        lines.append(f"  {where}: {error['msg']}")
    lines.append("Every key can also be set as VIPBOT_<SECTION>__<KEY>, e.g. VIPBOT_STORAGE__PATH.")
    return "\n".join(lines)


def _secrets_from_environment(data: dict[str, Any]) -> None:
    """Fold the conventional secret variables into the file's data (VIPBOT_* still wins)."""
    telegram = data.setdefault("telegram", {})
    if not isinstance(telegram, dict):
        return
    if token := os.environ.get("TELEGRAM_BOT_TOKEN"):
        telegram["token"] = token
    if secret := os.environ.get("TELEGRAM_WEBHOOK_SECRET"):
        webhook = telegram.setdefault("webhook", {})
        if isinstance(webhook, dict):
            webhook["secret_token"] = secret
    wechat = data.setdefault("wechat", {})
    if isinstance(wechat, dict):
        for variable, key in (
            ("WECHAT_APP_SECRET", "app_secret"),
            ("WECHAT_TOKEN", "token"),
            ("WECHAT_ENCODING_AES_KEY", "encoding_aes_key"),
        ):
            if value := os.environ.get(variable):
                wechat[key] = value


def load_settings(path: str | Path | None = None) -> Settings:
    """Read `path` (default ./config.yaml if present), apply the environment, validate."""
    file = Path(path) if path is not None else DEFAULT_CONFIG
    data: dict[str, Any] = {}
    if file.exists():
        data = _read_yaml(file)
    elif path is not None:
        raise ConfigError(f"config file {file} does not exist")
    _secrets_from_environment(data)
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(file) if file.exists() else "configuration")) from exc
