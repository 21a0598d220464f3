"""What a delivery loop hands down to each batch, as one object: worker → pool → lease.

A loop's batches all need the same few things: the app (for its context and
config), the stop signal (the unsent mails are given back at once when it is
set), the pool's wake-ups and shared state, the SMTP connection kept between
batches and the way to open a new one. `LoopContext` holds them, made once per
loop (`for_loop`) or per call from a Celery task, a command or a test (`here`).
"""

from __future__ import annotations

import smtplib
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, current_app

from . import smtp
from .pool import DeliveryPool, Wake, pool_of

# Opens a connection to the configured server: the connection, or None and why not.
Connect = Callable[[], tuple[Any, BaseException | None]]


class Link:
    """A loop's SMTP connection, kept from one batch to the next while mails keep coming.

    Small claims (a slow server) would otherwise cost a connection, and a TLS
    handshake and a login, per mail.
    """

    def __init__(self) -> None:
        self._connection: smtp.TimeoutConnection | None = None

    def take(self) -> smtp.TimeoutConnection | None:
        """The kept connection if the server still answers on it (NOOP), else None."""
        connection, self._connection = self._connection, None
        if connection is None:
            return None
        try:
            if connection.host is not None and connection.host.noop()[0] == 250:
                return connection
        except (OSError, smtplib.SMTPException):
            pass
        smtp.discard(connection)
        return None

    def keep(self, connection: smtp.TimeoutConnection) -> None:
        """Keep this connection for the next batch."""
        self.close()
        self._connection = connection

    def close(self) -> None:
        """QUIT the kept connection, if any."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            smtp.close(connection)


def _never() -> bool:
    return False


@dataclass(frozen=True)
class LoopContext:
    """The app, stop signal, wake-ups, pool and connections one delivery loop runs with."""

    app: Flask
    pool: DeliveryPool
    # Set when the process stops: unsent claims are given back at once, and the mail
    # in hand is finished or abandoned (timing.STOP_GRACE_SECONDS).
    stop: threading.Event = field(default_factory=threading.Event)
    wake: Wake = field(default_factory=Wake)  # the pool's wake-ups, passed on when much is due
    link: Link | None = None  # the connection kept between batches; None: one per batch
    connect: Connect = smtp.open_connection
    index: int = 0  # its place among the pool's loops: loop 0 also runs the daily jobs
    # Whether this loop must hold off for now (after a 421 the pool lets fewer loops send).
    paused: Callable[[], bool] = _never
    # Whether its passes also post due webhooks: a pool's loops do not, its WebhookLoop does.
    webhooks: bool = True

    @classmethod
    def for_loop(cls, app: Flask, stop: threading.Event, wake: Wake,
                 index: int) -> LoopContext:
        """The context of the pool's loop number `index`, keeping its connection (mails
        only: the pool posts its webhooks from a loop of their own)."""
        pool = pool_of(app)
        return cls(app, pool, stop, wake, Link(), index=index,
                   paused=lambda: not pool.may_send(index), webhooks=False)

    @classmethod
    def here(cls, stop: threading.Event | None = None,
             paused: Callable[[], bool] = _never) -> LoopContext:
        """A context for one call in the current app: one connection per batch."""
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        return cls(app, pool_of(app), stop if stop is not None else threading.Event(),
                   paused=paused)

    def should_stop(self) -> bool:
        """Whether this loop must take no further mail in hand: stopping, or paused."""
        return self.stop.is_set() or self.paused()
