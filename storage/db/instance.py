"""One bot process per SQLite database file: an exclusive lock on `<database>.lock`, held for the process's life.

Two `vipbot run` on one file would each recover the other's in-flight pushes at start-up (marking them
uncertain), double the pacing into Telegram's 429s and run every scheduled job twice. So the bot processes
(`vipbot run`, `vipbot console`) take this lock before anything touches the database, and a second one refuses to
start with one line naming the holder's pid. The tools that legitimately share the file while the bot runs
(`vipbot backup`, `vipbot import`, `vipbot doctor`) do not take it: SQLite handles their concurrency.

The lock is `flock(LOCK_EX | LOCK_NB)` on an open file (`LockFileEx` on Windows): the operating system drops it
when the process ends in any way, SIGKILL and power loss included, so a crash never leaves a stale lock behind.
The lock file itself stays (deleting it could let two processes lock two different files of the same name); its
content is only the holder's pid, for the message. Stdlib only.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

from storage.db.preflight import StorageError, check_path

if sys.platform == "win32":  # pragma: no cover - the bot is deployed on Linux; kept so that it still starts
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True


LOCK_SUFFIX = ".lock"


class AlreadyRunning(StorageError):
    """Another process holds the database's instance lock; `pid` is its pid when known."""

    def __init__(self, message: str, pid: int | None) -> None:
        super().__init__(message)
        self.pid = pid


def lock_path(database: str | os.PathLike[str]) -> Path:
    """The lock file beside the database: `data/vipbot.db` -> `data/vipbot.db.lock`."""
    file = Path(database)
    return file.with_name(file.name + LOCK_SUFFIX)


def holder_pid(database: str | os.PathLike[str]) -> int | None:
    """The pid written in the lock file (whether or not it is still held), or None."""
    try:
        text = lock_path(database).read_text(encoding="ascii", errors="replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


class InstanceLock:
    """The held lock of one database file; `release()` (or the process's end) lets another bot start."""

    def __init__(self, database: str | os.PathLike[str], fd: int) -> None:
        self.database = str(database)
        self.path = lock_path(database)
        self._fd: int | None = fd

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)  # the pid of a stopped bot would only mislead
        os.close(fd)  # closing the only descriptor drops the lock


def acquire(database: str | os.PathLike[str]) -> InstanceLock:
    """Take the instance lock of `database` (an SQLite file path), or raise `AlreadyRunning` (a `StorageError`:
    one line, exit code 2) when another process holds it. Checks the path first (`check_path`, which also makes
    the missing folder), so an unusable path gets its own message."""
    check_path(str(database))
    path = lock_path(database)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as exc:
        raise StorageError(
            f"cannot create the lock file {path.absolute()}: {exc.strerror or exc}; make its folder writable for"
            " this user, or set storage.path elsewhere"
        ) from None
    if not _try_lock(fd):
        os.close(fd)
        pid = holder_pid(database)
        who = f" (pid {pid})" if pid is not None else ""
        raise AlreadyRunning(
            f"another vipbot is already running on {database}{who}; stop it first, or give this one its own"
            " storage.path",
            pid,
        )
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
    except OSError:
        pass  # the lock is what counts; the pid is only for the message
    return InstanceLock(database, fd)


@contextlib.contextmanager
def hold(database: str | os.PathLike[str]) -> Iterator[InstanceLock]:
    """`acquire` for the duration of a `with` block."""
    lock = acquire(database)
    try:
        yield lock
    finally:
        lock.release()
