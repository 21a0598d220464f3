"""Delivering claimed mails over one connection per batch, and the loops that keep at it."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from flask import Flask

from . import outbox, smtp
from .compose import compose
from .models import OutboxMail, Outcome, Status

log = logging.getLogger("contact_site.delivery")


def deliver_due(should_stop: Callable[[], bool] | None = None) -> int:
    """Claim due mails and send them; the number claimed."""
    rows = outbox.claim_due_mails()
    if rows:
        deliver_batch(rows, should_stop)
    return len(rows)


def deliver_batch(rows: list[OutboxMail], should_stop: Callable[[], bool] | None = None) -> None:
    """Send claimed mails over one SMTP connection, reconnecting when it breaks."""
    connection = None
    try:
        for index, row in enumerate(rows):
            rest = rows[index:]
            if (should_stop is not None and should_stop()) or not outbox.keep_lease(rest):
                for other in rest:  # returned to the queue, or left to the new holder
                    outbox.release(other)
                return
            if connection is None:
                started = time.monotonic()
                connection, error = smtp.open_connection()
                if connection is None:
                    for other in rest:
                        _conclude(other, Status.QUEUED, smtp.describe(error), started)
                    return
            if not _send_one(connection, row):
                smtp.discard(connection)
                connection = None
    finally:
        if connection is not None:
            smtp.close(connection)


def _send_one(connection: smtp.TimeoutConnection, row: OutboxMail) -> bool:
    """Send one mail and record the outcome; False when the connection is unusable."""
    started = time.monotonic()
    try:
        message = compose(row.kind, row.submission, row.message_id, row.created_at)
    except Exception as error:  # a poison row, e.g. its attachment gone from disk
        _conclude(row, Status.FAILED, f"cannot compose: {smtp.describe(error)}", started)
        return True
    try:
        connection.send(message)
    except Exception as error:  # the delivery boundary: every failure is recorded
        if message.dispatched:  # 250 received; the break came after it
            _conclude(row, Status.SENT, None, started, f" (then {smtp.describe(error)})")
            return False
        status = Status.FAILED if smtp.is_permanent(error) else Status.QUEUED
        _conclude(row, status, smtp.describe(error), started)
        return smtp.usable(connection)
    _conclude(row, Status.SENT, None, started)
    return True


def _conclude(row: OutboxMail, status: Status, error: str | None, started: float,
              note: str = "") -> None:
    """Record one attempt and log it on one line: id, attempt, outcome, reply, time."""
    seconds = time.monotonic() - started
    if status == Status.SENT:
        outbox.record_sent(row, seconds, f"250{note}")
        outcome = Outcome.SENT
    elif status == Status.FAILED:
        outbox.record_failed(row, error or "", seconds)
        outcome = Outcome.FAILED
    else:
        outcome = outbox.record_transient(row, error or "", seconds)
    level = logging.INFO if status == Status.SENT else logging.WARNING
    log.log(level, "mail %s attempt %d %s reply=%r in %.2fs%s", row.id, row.attempts + 1,
            outcome, error or "250", seconds, note)


def run_delivery_loop(app: Flask, stop: threading.Event, wake: threading.Event | None = None,
                      on_idle: Callable[[], None] | None = None) -> None:
    """Deliver due mails until `stop` is set; sleep between polls unless woken."""
    wake = wake or threading.Event()
    poll = app.config["DELIVERY_POLL_SECONDS"]
    while not stop.is_set():
        wake.clear()  # before delivering: a wake-up during this pass earns another pass
        try:
            with app.app_context():
                claimed = deliver_due(should_stop=stop.is_set)
        except Exception:  # the loop must outlive a database hiccup; it is logged
            log.exception("delivery loop error; retrying in %ss", poll)
            claimed = 0
        if claimed == 0:
            if on_idle is not None:
                on_idle()
            if stop.is_set():
                break
            wake.wait(poll)


class DeliveryThread:
    """The `thread` backend: a daemon thread per process that delivers mails once queued."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the thread if this process has none (e.g. after a fork)."""
        with self._lock:
            alive = self._thread is not None and self._thread.is_alive()
            if alive and self._pid == os.getpid():
                return
            self._stop.clear()
            self._pid = os.getpid()
            self._thread = threading.Thread(
                target=run_delivery_loop, args=(self.app, self._stop, self._wake),
                name="contact-delivery", daemon=True,
            )
            self._thread.start()

    @property
    def running(self) -> bool:
        """Whether this process's thread is delivering."""
        return self._thread is not None and self._thread.is_alive() and self._pid == os.getpid()

    def wake(self) -> None:
        """Deliver now rather than at the next poll (only where the thread was started)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the mail in hand; claims not yet used are released."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
