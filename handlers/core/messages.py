"""The neutral message types that channel adapters translate to and from.

An adapter turns a platform update into an `Inbound`; a handler answers with `Reply` objects.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Identity:
    """A user as one channel knows them."""

    channel: str
    external_id: str
    display_name: str = ""
    username: str | None = None


@dataclass(frozen=True, slots=True)
class Document:
    """A file someone sent: its name, its size in bytes, and the channel's handle to fetch it by."""

    name: str
    size: int
    file_id: str
    content: bytes | None = field(default=None, repr=False)
    """The bytes, when the channel fetched them before handling (None: not fetched, e.g. too large)."""


@dataclass(frozen=True, slots=True)
class Contact:
    """A phone number someone shared; `own` only when the platform vouches it is the sender's own number (not
    a contact card of somebody else, forwarded or typed in)."""

    phone: str
    own: bool


@dataclass(frozen=True, slots=True)
class Inbound:
    """One incoming message, stripped of platform detail."""

    channel: str
    chat_id: str
    sender: Identity
    text: str
    is_group: bool
    key: str
    """Stable identity of this message across re-deliveries (e.g. ``telegram:update:42``)."""
    message_id: str | None = None
    thread_id: int | None = None
    reply_to: Identity | None = None
    """The author of the message this one replies to, if any (used to pick a target)."""
    addressed_to_bot: bool = False
    """True when the message is meant for the bot although in a group (a reply to it, the console)."""
    button: str | None = None
    """Callback data of a pressed button (``v1:<command>:<args>``); `text` is empty then."""
    document: Document | None = None
    """A file attached to the message (`text` is its caption)."""
    contact: Contact | None = None
    """A phone number shared with the message."""


@dataclass(frozen=True, slots=True)
class Button:
    label: str
    data: str


@dataclass(frozen=True, slots=True)
class Reply:
    """Something to say. With no `chat_id` it goes back to the chat (and thread) it answers."""

    text: str
    buttons: tuple[Button, ...] = field(default_factory=tuple)
    chat_id: str | None = None
    quote: bool = True
    """Quote the inbound message when answering in a group."""
    private: bool = False
    """Send to the sender's private chat instead (only when the member can be messaged privately)."""
    mention: Identity | None = None
    """Name this user at the start so that they are notified in a group."""
    document: tuple[str, bytes] | None = None
    """A file to attach: (file name, content); `text` is its caption."""
    image: bytes | None = None
    """A PNG picture to show (e.g. a results chart); `text` is its caption."""
    personal: bool = False
    """Concerns only the asker (their points, their profile): asked in a group, it goes to their private
    chat when the bot may message them, and the group sees at most a short line."""
    secret: bool = False
    """Must never be readable by others (a claim or redemption code): private, or held back with a hint."""
    board: bool = False
    """A check-in confirmation: in a group with a check-in board the board shows it instead of a message
    (and a button press shows it as a toast)."""
    ask_contact: str | None = None
    """Offer a key with this label that shares the member's own phone number (where the platform has one)."""
    close_keyboard: bool = False
    """Take away a key offered with `ask_contact`."""
