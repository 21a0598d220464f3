"""A queue for SQLite's one write lock, so that a writer is let in as soon as it is free.

SQLite's busy handler polls: a writer that finds the lock taken sleeps 1, 2, 5, 10,
… up to 100 ms between tries, so under load a POST spent most of its time asleep
after the lock had been freed (py-spy: 69 % of its time in BEGIN IMMEDIATE at
concurrency 8). The writers that matter (a submission's transaction, the outbox's
claims and outcomes) queue here first: those of one process on a lock, one of
them at a time on an flock of a file beside the database, tried every half
millisecond. It only orders writers: after SQLITE_BUSY_TIMEOUT_MS a writer goes
on without it and SQLite's own lock decides, as it does for every other writer.
No such queue exists for PostgreSQL, which locks rows, not the database.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from flask import Flask, current_app
from sqlalchemy.engine import URL

from .app_state import state_of
from .private_files import open_private

POLL_SECONDS = 0.0005


class WriteQueue:
    """The writers of one SQLite database: in this process a lock, between processes an flock."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path, self.timeout = path, timeout
        self._lock = threading.RLock()
        self._depth = 0  # changed only by the thread holding _lock
        self._fd = -1
        self._pid = 0

    def acquire(self) -> bool:
        """Wait for this database's write turn (re-entrant); False if it did not come in time."""
        deadline = time.monotonic() + self.timeout
        if not self._lock.acquire(timeout=self.timeout):
            return False
        if self._depth == 0 and not self._flock(deadline):
            self._lock.release()
            return False
        self._depth += 1
        return True

    def release(self) -> None:
        """End this thread's turn (the outermost release lets the next writer in)."""
        self._depth -= 1
        if self._depth == 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._lock.release()

    def _flock(self, deadline: float) -> bool:
        fd = self._file()
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    return False
                time.sleep(POLL_SECONDS)

    def _file(self) -> int:
        """This process's own descriptor: one inherited through a fork would share its lock."""
        if self._pid != os.getpid():
            # Private like the database beside it: another user could hold the flock.
            self._fd = open_private(self.path, os.O_RDWR | os.O_CREAT)
            self._pid = os.getpid()
        return self._fd


@dataclass
class WriteQueueState:
    """The app's write queue: a file-backed SQLite database has one, others none."""

    queue: WriteQueue | None = None


def queue_of(app: Flask) -> WriteQueue | None:
    """The app's write queue; None where writers need none (PostgreSQL, SQLite in memory)."""
    return state_of(app, WriteQueueState).queue


@contextmanager
def writing() -> Iterator[None]:
    """Hold this database's write turn for the block (nothing to wait for on PostgreSQL)."""
    queue = queue_of(current_app)
    held = queue is not None and queue.acquire()
    try:
        yield
    finally:
        if held and queue is not None:
            queue.release()


def init_app(app: Flask, url: URL, timeout: float) -> None:
    """Give a file-backed SQLite database its queue (its lock file is `<database>-writers`)."""
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        state_of(app, WriteQueueState).queue = WriteQueue(f"{url.database}-writers", timeout)
