"""A deadline for a whole HTTP exchange, which httpx's per-phase timeouts do not give.

Each read has its timeout, but a server sending its answer a byte at a time stays under
every one of them for as long as it likes, and holds the delivery (and its claim on
the outbox row) with it. The watchdog shuts the connection's socket when the deadline
passes, whatever the exchange is doing; the blocked read then fails at once. A
connection kept open from an earlier POST (keepalive.py) is watched from the start.
"""

from __future__ import annotations

import socket
import threading
from typing import Any


class Watchdog:
    """Ends a connection that is still open `seconds` after it began: its socket is shut."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.fired = False
        self._socket: socket.socket | None = None
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace hook: watch a new connection as soon as it is connected."""
        if event == "connection.connect_tcp.complete":
            self.watch(info["return_value"].get_extra_info("socket"))

    def watch(self, connected: socket.socket) -> None:
        """Watch this socket (of a new connection, or of one kept open) instead of any other."""
        # A duplicate of the descriptor: TLS takes the original over (and an SSLSocket
        # has no dup()); shutting the duplicate still ends the connection.
        duplicate = socket.fromfd(connected.fileno(), connected.family, connected.type)
        previous, self._socket = self._socket, duplicate
        if previous is not None:  # a kept connection httpcore found closed and replaced
            previous.close()
        if self.fired:  # the deadline passed while connecting
            self._shut()

    def _fire(self) -> None:
        self.fired = True
        self._shut()

    def _shut(self) -> None:
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed: the exchange has ended by itself

    def __enter__(self) -> Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        if self._socket is not None:
            self._socket.close()
