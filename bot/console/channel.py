"""The console channel: a terminal chat with the real handlers and database, one line per message.

You play a member in the VIP group. `/as NAME` switches member (`/as NAME cashier`, `manager` or `owner`, or
`staff` for owner, plays that staff role), `/private` and `/group` switch chat, `/upload PATH` sends a file (a
staff member's import), `/myphone PHONE` shares your own phone number (as Telegram's contact key does), `/quit`
leaves. It reads stdin, so it can be scripted.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TextIO

from bot.app.runtime import Runtime
from bot.delivery.outbox import ChannelPusher, Outcome, Push, PushResult
from handlers.core.dispatch import Dispatcher
from handlers.core.messages import Button, Contact, Document, Identity, Inbound, Reply
from handlers.core.parsing import parse_int
from handlers.core.ports import DocumentTooLarge
from handlers.core.roles import Role
from handlers.customers import CONTACT_COMMAND, FILE_COMMAND

CHANNEL = "console"
GROUP_CHAT = "console-group"
DOCUMENT_LIMIT = 10 * 1024 * 1024

_PLAYED_ROLES: dict[str, Role] = {
    "staff": Role.OWNER, "--staff": Role.OWNER, **{role.value: role for role in Role}
}  # fmt: skip
"""The last word of `/as NAME ROLE`."""

_HELP = (
    "console: /as NAME [owner|manager|cashier] switches member, /private or /group switches chat,\n"
    "/press N presses button N "
    "of the last message with buttons, /upload PATH sends a file, /myphone PHONE shares your phone number,\n"
    "/whoami, /quit.\n"
    "Staff by default: {staff}. Everything else goes to the bot; try /help."
)


class ConsolePusher(ChannelPusher):
    """Prints pushes (group posts, private notices, staff notices) to the terminal."""

    channel = CHANNEL
    per_second = 1000.0
    has_staff_chat = True

    def __init__(self, output: TextIO, on_buttons: Callable[[list[Button]], None] | None = None) -> None:
        self.out = output
        self.on_buttons = on_buttons
        self._posted = 0

    async def deliver(self, push: Push) -> PushResult:
        where = {"chat": "VIP group", "user": f"private to {push.target}", "staff": "staff chat"}[push.target_kind]
        self.out.write(f"📣 [{where}] {push.text}\n")
        if push.image is not None:
            self.out.write(f"     [picture, {len(push.image)} bytes]\n")
        for index, button in enumerate(push.buttons, start=1):
            self.out.write(f"     [{index}] {button.label}\n")
        self.out.flush()
        if push.buttons and self.on_buttons is not None:
            self.on_buttons(list(push.buttons))
        self._posted += 1
        return PushResult(Outcome.SENT, message_id=str(self._posted))

    async def edit(self, chat_id: str, message_id: str, text: str, buttons: Sequence[Button]) -> bool:
        self.out.write(f"✏️ [VIP group, post {message_id} updated] {text}\n")
        self.out.flush()
        return True


class ConsoleChannel:
    """Implements the dispatcher's ChannelPort for one person at a terminal."""

    def __init__(
        self,
        dispatcher: Dispatcher,
        user: str,
        staff_names: Mapping[str, Role] | Iterable[str],
        output: TextIO | None = None,
        exports: Path | None = None,
    ) -> None:
        self.dispatcher = dispatcher
        self.user = user
        self.staff_names: dict[str, Role] = (
            dict(staff_names) if isinstance(staff_names, Mapping) else dict.fromkeys(staff_names, Role.OWNER)
        )
        """Name -> role, as `staff.console` lists them (a plain list: owners)."""
        self.played_staff: dict[str, Role] = {}
        """Name -> the role `/as NAME ROLE` gave them for this session."""
        self.in_group = True
        self.out = output or sys.stdout
        self.exports = exports or Path("data/exports")
        self.last_buttons: list[Button] = []
        """The buttons shown last; `/press N` presses one."""
        self._session = uuid.uuid4().hex[:8]
        self._counter = 0

    async def attach(self, runtime: Runtime) -> None:
        """Register the console's pusher and its VIP group, so announcements print here."""
        runtime.outbox.register(ConsolePusher(self.out, self._remember))
        async with runtime.deps.db.transaction() as repos:
            await repos.chats.add(CHANNEL, GROUP_CHAT, runtime.deps.now_ts(), "console")

    # --- ChannelPort -------------------------------------------------------------------------------
    @property
    def bot_username(self) -> str | None:
        return "vipbot"

    def is_vip_chat(self, msg: Inbound) -> bool:
        return True

    async def role_of(self, msg: Inbound) -> Role | None:
        name = msg.sender.external_id
        return self.played_staff.get(name) or self.staff_names.get(name)

    async def is_group_member(self, msg: Inbound) -> bool:
        return True  # everyone you play is in the console's VIP group

    async def fetch_document(self, document: Document) -> bytes:
        """The file `/upload` names (its handle is its path)."""
        path = Path(document.file_id)
        size = await asyncio.to_thread(lambda: path.stat().st_size)
        if size > DOCUMENT_LIMIT:
            raise DocumentTooLarge(document.name)
        return await asyncio.to_thread(path.read_bytes)

    # --- the loop -----------------------------------------------------------------------------------
    def _print(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def _render(self, replies: list[Reply]) -> None:
        for reply in replies:
            where = "" if reply.chat_id is None else f"[to {reply.chat_id}] "
            if reply.private and self.in_group:
                where = f"[private to {self.user}] "
            mention = f"@{reply.mention.display_name} " if reply.mention else ""
            self._print(f"bot> {where}{mention}{reply.text}")
            if reply.document is not None:
                self._print(f"     [file {self._save(*reply.document)}]")
            if reply.image is not None:
                self._print(f"     [picture {self._save(f'picture-{self._counter}.png', reply.image)}]")
            self._remember(reply.buttons)
            for index, button in enumerate(reply.buttons, start=1):
                self._print(f"     [{index}] {button.label}")

    def _remember(self, buttons: Sequence[Button]) -> None:
        if buttons:
            self.last_buttons = list(buttons)

    def _save(self, name: str, content: bytes) -> str:
        """Attachments land next to the database, in exports/."""
        folder = self.exports
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / name
        path.write_bytes(content)
        return str(path)

    def _meta(self, line: str) -> bool:
        """Console-only commands; True when the line was one."""
        words = line.split()
        head = words[0].lower() if words else ""
        if head == "/as" and len(words) >= 2:
            played = _PLAYED_ROLES.get(words[-1].lower()) if len(words) >= 3 else None
            name = " ".join(words[1:-1] if played else words[1:])[:64]
            self.user = name
            if played:
                self.played_staff[name] = played
            role = self.played_staff.get(name) or self.staff_names.get(name)
            self._print(f"(now playing {name}, staff) [{role}]" if role else f"(now playing {name}, member)")
            return True
        if head in ("/private", "/group"):
            self.in_group = head == "/group"
            self._print("(chat: VIP group)" if self.in_group else f"(chat: private chat of {self.user})")
            return True
        if head == "/whoami":
            where = "VIP group" if self.in_group else "private chat"
            self._print(f"(you are {self.user} in the {where})")
            return True
        if head == "/press":
            return False  # handled in run(): it is a message to the bot
        if head in ("/console", "/?"):
            self._print(_HELP.format(staff=", ".join(sorted(self.staff_names)) or "nobody"))
            return True
        return False

    def inbound(self, text: str) -> Inbound:
        self._counter += 1
        chat = GROUP_CHAT if self.in_group else f"console-dm:{self.user}"
        return Inbound(
            channel=CHANNEL,
            chat_id=chat,
            sender=Identity(CHANNEL, self.user, self.user, self.user),
            text=text,
            is_group=self.in_group,
            key=f"{CHANNEL}:{self._session}:{self._counter}",
            message_id=str(self._counter),
            addressed_to_bot=True,
        )

    async def say(self, text: str) -> list[Reply]:
        """Send one line as the current member and print the answer; `/press N` presses a button."""
        msg = self.inbound(text)
        words = text.split()
        if words and words[0].lower() == "/press":
            number = words[1] if len(words) > 1 else ""
            if parse_int(number, 1, len(self.last_buttons)) is None:  # then int() reads it (１ too, not ①)
                self._print(f"(no button {number or '?'} to press; {len(self.last_buttons)} shown last)")
                return []
            msg = replace(msg, text="", button=self.last_buttons[int(number) - 1].data)
        elif words and words[0].lower() in ("/upload", "/myphone"):
            found = await self._attachment(msg, words[0].lower(), text.split(maxsplit=1)[1:])
            if found is None:
                return []
            msg = found
        replies = await self.dispatcher.handle(msg, self)
        self._render(replies)
        return replies

    async def _attachment(self, msg: Inbound, head: str, rest: list[str]) -> Inbound | None:
        """`/upload PATH` as a message with that file; `/myphone PHONE` as the sender sharing their own number."""
        if not rest:
            self._print(f"(usage: {head} {'PATH' if head == '/upload' else 'PHONE'})")
            return None
        if head == "/myphone":
            return replace(msg, text="", button=f"v1:{CONTACT_COMMAND}:", contact=Contact(rest[0].strip(), True))
        path = Path(rest[0].strip())
        try:
            size = await asyncio.to_thread(lambda: path.stat().st_size)
            document = Document(path.name, size, str(path))
            document = replace(document, content=await self.fetch_document(document))
        except DocumentTooLarge:
            pass  # sent without its content: the bot says it is too large
        except OSError as exc:
            self._print(f"(cannot read {path}: {exc.strerror or exc})")
            return None
        return replace(msg, text="", button=f"v1:{FILE_COMMAND}:", document=document)

    async def run(
        self,
        read_line: Callable[[], str] | None = None,
        interactive: bool = False,
        settle: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """Read lines until EOF or /quit; `settle` runs after each line (the CLI lets pushes print)."""
        reader = read_line or sys.stdin.readline
        if interactive:
            self._print(_HELP.format(staff=", ".join(sorted(self.staff_names)) or "nobody"))
        while True:
            if interactive:
                self.out.write(f"{self.user}> ")
                self.out.flush()
            line = await asyncio.to_thread(reader)
            if line == "":
                break
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if line.strip().lower() in ("/quit", "/exit"):
                break
            if self._meta(line.strip()):
                continue
            await self.say(line)
            if settle is not None:
                await settle()
