"""`vipbot doctor`'s Telegram checks, asked of the Bot API with python-telegram-bot's `Bot` (the configured
`telegram.base_url` and `telegram.proxy`, short timeouts):

* the token works (`getMe`; through `telegram.proxy` when set), and whether privacy mode is on;
* the webhook (`getWebhookInfo`): with `telegram.webhook.url` set, Telegram has that URL and no delivery error
  (the secret_token cannot be read back from Telegram: the bot registers it again at every start); with no
  URL (polling), no other webhook is registered (the bot deletes it at start);
* every `telegram.groups` id is a group the bot is in (`getChat`, `getChatMember`), where it sees plain
  messages such as `签到`: it is an admin there, or privacy mode is off;
* every `staff.telegram` id resolves (`getChat`: a user who never started the bot is not found), and the
  staff chat `staff.telegram_chat` can be reached.

Each check gives one `Finding`; nothing here raises (a failure is a finding), and the token is never shown.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from urllib.parse import urlsplit

from telegram import Bot, ChatFullInfo, ChatMember, User, WebhookInfo
from telegram.constants import ChatType
from telegram.error import BadRequest, ChatMigrated, Forbidden, InvalidToken, NetworkError, TelegramError
from telegram.request import HTTPXRequest

from bot.app.checks import Finding
from bot.app.config import Settings

TIMEOUT_SECONDS = 10.0
"""Each call to the Bot API: connect, send and read within this."""
WEBHOOK_PORTS = frozenset({80, 88, 443, 8443})
"""The only ports Telegram delivers webhooks to (setWebhook refuses the others)."""
NETWORK_FIX = (
    "this server cannot reach the Bot API: check its internet connection and DNS; where Telegram is blocked"
    " (mainland China) set telegram.proxy to an HTTP or SOCKS proxy, or telegram.base_url to a self-hosted"
    " Bot API server (or run the bot on a server abroad)"
)
PRIVACY_FIX = (
    "BotFather: /setprivacy → choose the bot → Disable (then remove the bot from the group and add it again,"
    " Telegram applies it on joining), or make the bot an admin of the group"
)
TOKEN_FIX = "copy the token from BotFather (/mybots → your bot → API Token) into TELEGRAM_BOT_TOKEN or telegram.token"
RESTRICTED_FIX = "lift the bot's restriction in the group's permissions, or make it an admin"
START_FIX = "they open a private chat with @{bot} and press Start (a bot cannot write to anyone first)"


def _client(settings: Settings, timeout: float) -> Bot:
    proxy = settings.telegram.proxy or None  # None: HTTPS_PROXY / ALL_PROXY from the environment still apply

    def request() -> HTTPXRequest:
        return HTTPXRequest(connection_pool_size=2, read_timeout=timeout, write_timeout=timeout,
                            connect_timeout=timeout, pool_timeout=timeout, proxy=proxy)  # fmt: skip

    return Bot(settings.telegram_token, base_url=settings.telegram.base_url, request=request(),
               get_updates_request=request())  # fmt: skip


class _Check:
    """One doctor run against one bot: the findings so far, and the texts that must never show (the token)."""

    def __init__(self, settings: Settings, bot: Bot) -> None:
        self.settings = settings
        self.bot = bot
        self.token = settings.telegram_token
        self.findings: list[Finding] = []
        self.me: User | None = None

    def clean(self, exc: BaseException | str) -> str:
        """The error's text without the token or the proxy's password."""
        text = str(exc) or type(exc).__name__
        if self.token:
            text = text.replace(self.token, "<token>")
        password = urlsplit(self.settings.telegram.proxy).password
        return text.replace(password, "***") if password else text

    @property
    def username(self) -> str:
        return self.me.username if self.me is not None and self.me.username else "your bot"

    @property
    def privacy_off(self) -> bool:
        return bool(self.me is not None and self.me.can_read_all_group_messages)

    def network_fix(self) -> str:
        proxy = urlsplit(self.settings.telegram.proxy)
        if proxy.hostname:  # never the whole URL: it may hold a password
            where = f"{proxy.hostname}:{proxy.port}" if proxy.port else proxy.hostname
            return f"check that the proxy in telegram.proxy ({where}) is up and lets this server reach Telegram"
        return NETWORK_FIX

    # --- the token ---------------------------------------------------------------------------------
    async def token_works(self) -> bool:
        name = "telegram token"
        host = urlsplit(self.settings.telegram.base_url).netloc or self.settings.telegram.base_url
        try:
            await self.bot.initialize()  # getMe
            self.me = self.bot.bot
        except InvalidToken as exc:
            reason = self.clean(exc.__cause__ or exc)  # PTB's own message repeats the token
            fix = TOKEN_FIX
            if "not found" in reason.lower() and self.settings.telegram.base_url != "https://api.telegram.org/bot":
                fix += f"; or telegram.base_url ({self.settings.telegram.base_url}) is wrong: it must end in /bot"
            self.findings.append(Finding.fail(name, f"Telegram ({host}) refused the token: {reason}", fix))
            return False
        except NetworkError as exc:
            self.findings.append(Finding.fail("telegram connection", f"cannot reach {host}: {self.clean(exc)}",
                                              self.network_fix()))  # fmt: skip
            return False
        except TelegramError as exc:
            self.findings.append(Finding.fail(name, f"getMe failed: {self.clean(exc)}", "try again in a minute"))
            return False
        privacy = "off (sees every group message)" if self.privacy_off else "on"
        via = f" through {host}" if host != "api.telegram.org" else ""
        self.findings.append(Finding.ok(name, f"@{self.username} works{via}; privacy mode {privacy}"))
        return True

    # --- the webhook -------------------------------------------------------------------------------
    async def webhook(self) -> None:
        name = "telegram webhook"
        wanted = self.settings.telegram.webhook.url
        if wanted:
            shape = _webhook_url_problem(wanted)
            if shape:
                self.findings.append(Finding.fail(name, f"telegram.webhook.url {wanted} {shape}",
                                                  "use https://YOUR-DOMAIN/telegram on port 443, 80, 88 or 8443, "
                                                  "behind a reverse proxy with a valid certificate"))  # fmt: skip
                return
        try:
            info = await self.bot.get_webhook_info()
        except TelegramError as exc:
            fix = self.network_fix() if isinstance(exc, NetworkError) else "try again in a minute"
            self.findings.append(Finding.fail(name, f"getWebhookInfo failed: {self.clean(exc)}", fix))
            return
        self.findings.append(self._webhook_finding(name, wanted, info))

    def _webhook_finding(self, name: str, wanted: str, info: WebhookInfo) -> Finding:
        registered, pending = info.url, info.pending_update_count
        waiting = f" ({pending} updates waiting)" if pending else ""
        if not wanted:
            if not registered:
                return Finding.ok(name, "none: the bot polls (getUpdates)")
            return Finding.warn(
                name,
                f"telegram.webhook.url is empty (polling), but a webhook is registered at {registered}{waiting}:"
                " `vipbot run` deletes it at start and polls instead (the waiting updates are kept)",
                "if another program or another copy of the bot serves that webhook with this token, give this "
                f"bot its own token (BotFather /newbot); to use the webhook, set telegram.webhook.url: {registered}",
            )
        secret = "the secret_token cannot be read back from Telegram; the bot registers it again at every start"
        if not registered:
            return Finding.warn(name, f"none registered yet{waiting}; `vipbot run` registers {wanted} at start",
                                "start the bot (vipbot run); run the doctor again while it runs")  # fmt: skip
        if registered != wanted:
            return Finding.fail(
                name,
                f"Telegram delivers to {registered}, not to telegram.webhook.url {wanted}{waiting}",
                "if telegram.webhook.url was changed since the bot started, restart it (it registers the URL at "
                "start); otherwise another program or copy of the bot uses this token: stop it, or give this bot "
                "its own token",
            )
        if info.last_error_message:
            when = _when(info.last_error_date, self.settings)
            return Finding.warn(
                name,
                f"registered at {wanted}{waiting}, but Telegram's last delivery failed{when}: "
                f"{info.last_error_message}",
                "if the bot was running then, check that the URL reaches it: DNS, the reverse proxy forwarding to "
                f"http.port {self.settings.http.port}, a valid HTTPS certificate (while the bot is stopped such "
                "errors are expected)",
            )
        if not urlsplit(wanted).path.endswith("/telegram"):
            return Finding.warn(name, f"registered at {wanted}; the bot answers at /telegram",
                                "make sure the reverse proxy forwards this URL to the bot's /telegram")  # fmt: skip
        return Finding.ok(name, f"registered at {wanted}{waiting} ({secret})")

    # --- the groups --------------------------------------------------------------------------------
    async def groups(self) -> None:
        groups = self.settings.telegram.groups
        if not groups:
            self.findings.append(Finding.warn(
                "telegram groups", "telegram.groups lists no group: the bot serves private chats only",
                "add the bot to the VIP group and send /help there: the bot answers with the group's id; list it "
                "in telegram.groups",
            ))  # fmt: skip
            return
        for group in groups:
            self.findings.append(await self._group(group))

    async def _group(self, group: int) -> Finding:
        name = f"group {group}"
        chat = await self._chat(name, group, "add the bot to the group, and check the id (a supergroup's starts "
                                              "with -100)")  # fmt: skip
        if isinstance(chat, Finding):
            return chat
        if chat.type not in (ChatType.GROUP, ChatType.SUPERGROUP):
            return Finding.fail(name, f"is a {chat.type} chat, not a group", "list only group ids in telegram.groups")
        title = f"“{chat.title}”" if chat.title else "the group"
        member = await self._bot_member(name, group)
        if isinstance(member, Finding):
            return member
        if member.status in (ChatMember.ADMINISTRATOR, ChatMember.OWNER):
            return Finding.ok(name, f"{title}: the bot is an admin (sees every message)")
        if member.status in (ChatMember.LEFT, ChatMember.BANNED):
            return Finding.fail(name, f"{title}: the bot is not in the group ({member.status})",
                                "add the bot to the group again")  # fmt: skip
        if member.status == ChatMember.RESTRICTED and not getattr(member, "can_send_messages", True):
            return Finding.fail(name, f"{title}: the bot may not send messages there", RESTRICTED_FIX)
        if self.privacy_off:
            return Finding.ok(name, f"{title}: privacy mode is off (the bot sees every message)")
        return Finding.fail(name, f"{title}: the bot is not an admin and privacy mode is on, so it sees only "
                                  "/commands, not plain 签到", PRIVACY_FIX)  # fmt: skip

    async def _chat(self, name: str, chat_id: int, not_found_fix: str) -> ChatFullInfo | Finding:
        """getChat, or the finding that says why it failed."""
        try:
            return await self.bot.get_chat(chat_id)
        except ChatMigrated as exc:
            new = exc.new_chat_id
            return Finding.fail(name, f"the group was upgraded to a supergroup with the id {new}",
                                f"replace {chat_id} with {new} in the configuration")  # fmt: skip
        except BadRequest as exc:
            return Finding.fail(name, f"Telegram: {self.clean(exc)}", not_found_fix)
        except Forbidden as exc:
            return Finding.fail(name, f"Telegram: {self.clean(exc)}", "add the bot to the group again")
        except TelegramError as exc:
            fix = self.network_fix() if isinstance(exc, NetworkError) else "try again in a minute"
            return Finding.fail(name, f"getChat failed: {self.clean(exc)}", fix)

    async def _bot_member(self, name: str, chat_id: int) -> ChatMember | Finding:
        assert self.me is not None
        try:
            return await self.bot.get_chat_member(chat_id, self.me.id)
        except (BadRequest, Forbidden) as exc:
            return Finding.fail(name, f"the bot's membership cannot be read: {self.clean(exc)}",
                                "add the bot to the group again")  # fmt: skip
        except TelegramError as exc:
            fix = self.network_fix() if isinstance(exc, NetworkError) else "try again in a minute"
            return Finding.fail(name, f"getChatMember failed: {self.clean(exc)}", fix)

    # --- the staff ---------------------------------------------------------------------------------
    async def staff(self) -> None:
        staff = self.settings.staff
        if not staff.telegram:
            self.findings.append(Finding.warn("telegram staff", "staff.telegram lists no one: nobody can use staff "
                                              "commands on Telegram", "list the owner's Telegram user id under "
                                              "staff.telegram, e.g. 123456789: owner"))  # fmt: skip
        for user_id, role in staff.telegram.items():
            self.findings.append(await self._staff_member(user_id, role.value))
        if staff.telegram_chat is not None:
            self.findings.append(await self._staff_chat(staff.telegram_chat))

    async def _staff_member(self, user_id: int, role: str) -> Finding:
        name = f"staff {user_id}"
        if user_id <= 0:
            return Finding.fail(name, f"{user_id} is a group's id, not a person's",
                                "list people's Telegram user ids (positive numbers) under staff.telegram")  # fmt: skip
        try:
            chat = await self.bot.get_chat(user_id)
        except BadRequest as exc:
            return Finding.warn(name, f"{role}: Telegram answers “{self.clean(exc)}”: this person never started the "
                                      "bot (or the id is wrong), so it cannot write to them",
                                START_FIX.format(bot=self.username))  # fmt: skip
        except Forbidden as exc:
            return Finding.warn(name, f"{role}: Telegram answers “{self.clean(exc)}”",
                                f"they unblock @{self.username} and press Start")  # fmt: skip
        except TelegramError as exc:
            fix = self.network_fix() if isinstance(exc, NetworkError) else "try again in a minute"
            return Finding.fail(name, f"getChat failed: {self.clean(exc)}", fix)
        if chat.type != ChatType.PRIVATE:
            return Finding.fail(name, f"{user_id} is a {chat.type} chat, not a person",
                                "list people's Telegram user ids under staff.telegram")  # fmt: skip
        return Finding.ok(name, f"{_person(chat)}, {role}")

    async def _staff_chat(self, chat_id: int) -> Finding:
        name = f"staff chat {chat_id}"
        if chat_id > 0:
            fix = START_FIX.format(bot=self.username)
        else:
            fix = "add the bot to that group, and check the id in staff.telegram_chat"
        chat = await self._chat(name, chat_id, fix)
        if isinstance(chat, Finding):
            return chat
        if chat.type == ChatType.PRIVATE:
            return Finding.ok(name, f"{_person(chat)} (private chat): staff notices go there")
        if chat.type == ChatType.CHANNEL:
            return Finding.fail(name, "is a channel, not a group or a person", "set staff.telegram_chat to a group")
        member = await self._bot_member(name, chat_id)
        if isinstance(member, Finding):
            return member
        title = f"“{chat.title}”" if chat.title else "the group"
        if member.status in (ChatMember.LEFT, ChatMember.BANNED):
            return Finding.fail(name, f"{title}: the bot is not in it ({member.status})", "add the bot to that group")
        if member.status == ChatMember.RESTRICTED and not getattr(member, "can_send_messages", True):
            return Finding.fail(name, f"{title}: the bot may not send messages there",
                                "lift the bot's restriction in that group's permissions")  # fmt: skip
        return Finding.ok(name, f"{title}: staff notices go there")


def _webhook_url_problem(url: str) -> str:
    """Why Telegram would refuse this webhook URL (empty: it would take it)."""
    try:
        parts = urlsplit(url)
        port = parts.port or 443
    except ValueError:
        return "is not a URL"
    if parts.scheme != "https" or not parts.hostname:
        return "is not an https:// URL (Telegram delivers webhooks over HTTPS only)"
    if port not in WEBHOOK_PORTS:
        return f"uses port {port}; Telegram delivers only to ports 443, 80, 88 and 8443"
    return ""


def _person(chat: ChatFullInfo) -> str:
    name = " ".join(part for part in (chat.first_name, chat.last_name) if part) or str(chat.id)
    return f"{name} (@{chat.username})" if chat.username else name


def _when(moment: datetime | None, settings: Settings) -> str:
    return f" at {moment.astimezone(settings.zone):%Y-%m-%d %H:%M}" if moment is not None else ""


async def checks(settings: Settings, *, timeout: float = TIMEOUT_SECONDS) -> list[Finding]:
    """The Telegram findings (none when no token is configured); never raises for what Telegram answers."""
    if not settings.telegram_token:
        return []
    try:
        bot = _client(settings, timeout)
    except Exception as exc:  # the configuration refuses bad proxies already; this is the last guard
        password = urlsplit(settings.telegram.proxy).password
        text = str(exc).replace(password, "***") if password else str(exc)
        return [Finding.fail("telegram connection", f"cannot set up the connection: {text}",
                             "check telegram.proxy (http://host:port or socks5://host:port; SOCKS needs "
                             "pip install 'python-telegram-bot[socks]')")]  # fmt: skip
    check = _Check(settings, bot)
    try:
        if await check.token_works():
            await check.webhook()
            await check.groups()
            await check.staff()
    finally:
        with contextlib.suppress(Exception):
            await bot.shutdown()
    return check.findings
