"""The in-process delivery thread, and the loop `outbox work` runs in the foreground."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable

from flask import Flask

from . import outbox

log = logging.getLogger("contact_site.delivery")


def run_delivery_loop(app: Flask, stop: threading.Event, wake: threading.Event | None = None,
                      on_idle: Callable[[], None] | None = None) -> None:
    """Deliver due mails until `stop` is set; sleep between polls unless woken."""
    wake = wake or threading.Event()
    poll = app.config["DELIVERY_POLL_SECONDS"]
    while not stop.is_set():
        wake.clear()  # before delivering: a wake-up during this pass earns another pass
        try:
            with app.app_context():
                claimed = outbox.deliver_due(should_stop=stop.is_set)
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
    """A daemon thread per process that delivers mails as soon as they are queued."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def ensure_started(self) -> None:
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

    def wake(self) -> None:
        """Deliver now rather than at the next poll."""
        self.ensure_started()
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop after the mail in hand; claims not yet used are released."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)


def init_app(app: Flask) -> None:
    """Choose the delivery backend; the thread starts with the app unless told not to."""
    if app.config["DELIVERY_BACKEND"] == "celery":
        from .celery_app import CeleryWaker

        app.extensions["contact_delivery"] = CeleryWaker(app)
        return
    delivery = DeliveryThread(app)
    app.extensions["contact_delivery"] = delivery
    # Under the flask CLI (outbox status, init-db, ...) no thread should start;
    # `flask run` starts it with the first request instead.
    from_cli = os.environ.get("FLASK_RUN_FROM_CLI") == "true"
    if app.config.get("DELIVERY_THREAD_AUTOSTART", True) and not from_cli:
        delivery.ensure_started()
    app.before_request(delivery.ensure_started)
