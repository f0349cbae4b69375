"""Recording the charts the bot draws: on which thread, whether a write transaction was open, and what.
The fixtures `weekly` and `bars` are served through tests/conftest.py."""

from __future__ import annotations

import io
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

import handlers.polls.commands
import handlers.stats.commands
from storage.db.database import Database

if TYPE_CHECKING:
    from tests.conftest import ChatDriver

PNG = b"\x89PNG\r\n\x1a\n"


class Recorder:
    """Wraps a drawing function: records the thread each drawing ran on, whether a write transaction was open
    then, and the picture it drew."""

    def __init__(self, draw: Callable[..., bytes], db: Database) -> None:
        self._draw = draw
        self._db = db
        self.threads: list[int] = []
        self.writing: list[bool] = []
        self.pictures: list[bytes] = []

    def __call__(self, *args: Any, **kwargs: Any) -> bytes:
        self.threads.append(threading.get_ident())
        self.writing.append(self._db.caller_writing)
        picture = self._draw(*args, **kwargs)
        self.pictures.append(picture)
        return picture


def size_of(picture: bytes) -> tuple[int, int]:
    assert picture.startswith(PNG)
    with Image.open(io.BytesIO(picture)) as image:
        image.verify()  # complete and uncorrupted
        assert image.format == "PNG"
        return image.size


@pytest.fixture
def weekly(chat: ChatDriver, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder(handlers.stats.commands.weekly_chart, chat.runtime.deps.db)
    monkeypatch.setattr(handlers.stats.commands, "weekly_chart", recorder)
    return recorder


@pytest.fixture
def bars(chat: ChatDriver, monkeypatch: pytest.MonkeyPatch) -> Recorder:
    recorder = Recorder(handlers.polls.commands.bar_chart, chat.runtime.deps.db)
    monkeypatch.setattr(handlers.polls.commands, "bar_chart", recorder)
    return recorder
