"""The Celery backend: delivery as tasks on Redis, a thin shell over outbox.deliver_due.

Run a worker with `celery -A contact_site.celery_app worker`. The database stays
the source of truth: a task carries no mail, it only says "deliver what is due",
so a lost, repeated or late task can neither lose nor duplicate a mail.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery, Task
from celery.signals import worker_process_init, worker_ready, worker_shutdown
from flask import Flask

from . import outbox
from .db import db

log = logging.getLogger("contact_site.delivery")

# Redis re-delivers an unacknowledged task after visibility_timeout (TRAPS.md), so
# no task here waits for a countdown or runs long: retries are found by a sweep
# every DELIVERY_POLL_SECONDS, and one task delivers for at most TASK_BUDGET_SECONDS.
VISIBILITY_TIMEOUT_SECONDS = 3600
TASK_BUDGET_SECONDS = 60
_flask: Flask | None = None


def bind_app(app: Flask) -> None:
    """Use this Flask app for task contexts and settings (the web process's own app)."""
    global _flask
    _flask = app


def flask_app() -> Flask:
    """The Flask app tasks run in; a worker creates it from the environment on first use."""
    if _flask is None:
        # Imported here: the package imports this module while it assembles the app.
        from contact_site import create_app

        bind_app(create_app({"DELIVERY_THREAD_AUTOSTART": False}))
    assert _flask is not None
    return _flask


def _settings() -> dict[str, Any]:
    """Celery settings from the Flask configuration, read when Celery first needs them."""
    config = flask_app().config
    return {
        "broker_url": config["CELERY_BROKER_URL"],
        "broker_transport_options": {"visibility_timeout": VISIBILITY_TIMEOUT_SECONDS},
        "broker_connection_retry_on_startup": True,
        # A task killed with its worker goes back to the queue instead of being acked.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "worker_prefetch_multiplier": 1,
    }


class FlaskTask(Task):
    """A task that runs inside the Flask app's context."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with flask_app().app_context():
            return super().__call__(*args, **kwargs)


celery_app = Celery("contact_site", task_cls=FlaskTask)
celery_app.add_defaults(_settings)


@celery_app.task(name="contact_site.deliver_due")
def deliver_due() -> int:
    """Deliver due mails, batch after batch, for a bounded time; the number claimed."""
    total, deadline = 0, time.monotonic() + TASK_BUDGET_SECONDS
    while time.monotonic() < deadline:
        claimed = outbox.deliver_due()
        if not claimed:
            return total
        total += claimed
    send_deliver_due()  # more may be due: carry on in a fresh task
    return total


def send_deliver_due(expires: float | None = None) -> bool:
    """Queue a deliver_due task; False (logged) when the broker cannot be reached."""
    try:
        deliver_due.apply_async(expires=expires, retry=False)
    except Exception:  # the mails are safe in the database; the sweep will find them
        log.warning("could not queue deliver_due; the next sweep will", exc_info=True)
        return False
    return True


class CeleryWaker:
    """The web process's side of the Celery backend: ask a worker to deliver now."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        bind_app(app)

    def ensure_started(self) -> None:
        """Nothing runs in the web process with this backend."""

    def wake(self) -> None:
        """Queue a delivery task for the mails just stored."""
        send_deliver_due()

    def stop(self, timeout: float = 30.0) -> None:
        """Nothing to stop in the web process."""


class Sweeper:
    """In the worker's main process: queue deliver_due every DELIVERY_POLL_SECONDS.

    This finds retries coming due and mails left by a worker that died, with no
    long countdowns (and no separate beat process) to manage.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="contact-sweep", daemon=True)

    def start(self) -> None:
        """Start sweeping, with one sweep at once for what is waiting now."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sweeping."""
        self._stop.set()
        self._thread.join(self.interval + 5)

    def _run(self) -> None:
        while True:
            # A sweep not run within two intervals is stale: a newer one follows.
            send_deliver_due(expires=2 * self.interval)
            if self._stop.wait(self.interval):
                return


_sweeper: Sweeper | None = None


@worker_ready.connect
def _start_sweeper(**_kwargs: Any) -> None:
    """Start the sweep once the worker is ready to take tasks."""
    global _sweeper
    _sweeper = Sweeper(flask_app().config["DELIVERY_POLL_SECONDS"])
    _sweeper.start()


@worker_shutdown.connect
def _stop_sweeper(**_kwargs: Any) -> None:
    """Stop the sweep with the worker."""
    if _sweeper is not None:
        _sweeper.stop()


@worker_process_init.connect
def _fresh_connections(**_kwargs: Any) -> None:
    """A forked pool process must not share the parent's database connections."""
    with flask_app().app_context():
        db.engine.dispose(close=False)
