"""A deadline for a whole HTTP exchange, which httpx's per-phase timeouts do not give.

Each read has its timeout, but a server sending its answer a byte at a time stays under
every one of them for as long as it likes, and holds the delivery (and its claim on
the outbox row) with it. The watchdog shuts the connection's socket when the deadline
passes, whatever the exchange is doing; the blocked read then fails at once. A
connection kept open from an earlier POST (keepalive.py) is watched from the start.

One watchdog thread serves the exchanges of a delivery pass one after another: a
thread started per POST cost about a tenth of a POST to a fast receiver. It
sleeps until the deadline of the exchange running; one that ended before it is
forgotten, and the thread finds the next exchange's deadline when it wakes (woken
early only for a deadline sooner than the one it sleeps until).
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any


class Exchange:
    """One exchange under watch: its socket is shut if it is still running `seconds` after
    it began."""

    def __init__(self, watchdog: Watchdog, seconds: float) -> None:
        self.seconds, self.fired = seconds, False
        self.ends_at = 0.0
        self._watchdog = watchdog
        self._socket: socket.socket | None = None

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: watch a new connection as soon as it is connected."""
        if event == "connection.connect_tcp.complete":
            self.watch(info["return_value"].get_extra_info("socket"))

    def watch(self, connected: socket.socket) -> None:
        """Watch this socket (of a new connection, or of one kept open) instead of any other."""
        # A duplicate of the descriptor: TLS takes the original over (and an SSLSocket
        # has no dup()); shutting the duplicate still ends the connection.
        duplicate = socket.fromfd(connected.fileno(), connected.family, connected.type)
        with self._watchdog.lock:
            previous, self._socket = self._socket, duplicate
            if self.fired:  # the deadline passed while connecting
                self._shut()
        if previous is not None:  # a kept connection httpcore found closed and replaced
            previous.close()

    def fire(self) -> None:
        """The deadline passed: end the connection (called with the watchdog's lock held)."""
        self.fired = True
        self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: the exchange has ended by itself

    def __enter__(self) -> Exchange:
        self.ends_at = time.monotonic() + self.seconds
        self._watchdog.arm(self)
        return self

    def __exit__(self, *exc: object) -> None:
        self._watchdog.disarm(self)  # after this, nothing fires on this exchange
        if self._socket is not None:
            self._socket.close()


class Watchdog:
    """The thread that ends each exchange of a pass at its deadline; closed with the pass."""

    def __init__(self) -> None:
        self.lock = threading.Condition()
        self._current: Exchange | None = None
        self._thread: threading.Thread | None = None
        self._closed = False
        self._until = float("inf")  # the deadline the thread sleeps until

    def exchange(self, seconds: float) -> Exchange:
        """An exchange to run under watch (`with`), ended if it runs past `seconds`."""
        return Exchange(self, seconds)

    def arm(self, exchange: Exchange) -> None:
        """Watch this exchange from now on."""
        with self.lock:
            self._current = exchange
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="contact-webhook-deadline",
                                                daemon=True)
                self._thread.start()
            elif exchange.ends_at < self._until:
                # Only a thread asleep past this deadline needs waking: one asleep until
                # an earlier exchange's deadline finds this later one when it wakes.
                self.lock.notify()

    def disarm(self, exchange: Exchange) -> None:
        """Stop watching this exchange (it has ended)."""
        with self.lock:
            if self._current is exchange:
                self._current = None

    def _run(self) -> None:
        with self.lock:
            while not self._closed:
                current = self._current
                self._until = float("inf") if current is None else current.ends_at
                left = self._until - time.monotonic()
                if left <= 0:
                    assert current is not None
                    current.fire()
                    self._current = None
                else:
                    self.lock.wait(None if current is None else left)

    def close(self) -> None:
        """End the thread."""
        with self.lock:
            self._closed = True
            self.lock.notify()
        if self._thread is not None:
            self._thread.join()
