"""Waking delivery from a thread of the web process's own, so no request waits for a broker.

Telling Celery "deliver now" means talking to its broker; a broker that is down
or silent would hold the visitor's POST for the broker timeouts and retries
(measured: 2 s for a refused port). The request only sets a flag; one thread per
app passes it on. Wakes that come while it is busy fold into one. A wake lost
(the process stops, the broker is down) costs nothing: the mails are in the
database and the next sweep sends them.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from flask import Flask, current_app

from ..app_state import state_of
from ..delivery.backend import backend_of

log = logging.getLogger("contact_site.delivery")
_creating = threading.Lock()


class Waker:
    """One daemon thread that wakes the app's delivery backend whenever asked."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._asked = threading.Event()
        # Started at the first wake, in the process that serves: never before a fork.
        self._thread = threading.Thread(target=self._run, name="contact-waker", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Ask for a wake-up; returns at once."""
        self._asked.set()

    def _run(self) -> None:
        while True:
            self._asked.wait()
            self._asked.clear()
            try:
                with self.app.app_context():
                    backend_of(self.app).wake()
            except Exception:  # never let one failure end the thread; the sweep follows
                log.exception("waking delivery failed; the next sweep will send the mails")


@dataclass
class WakerState:
    """The app's waker in this process, made at the first wake."""

    waker: Waker | None = None


def wake_delivery() -> None:
    """Tell this app's delivery that mails were queued, without waiting for it."""
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    state = state_of(app, WakerState)
    with _creating:
        if state.waker is None:
            state.waker = Waker(app)
        waker = state.waker
    waker.wake()
