"""The Celery backend, wired the way Flask's "Background Tasks with Celery" guide does.

`celery_init_app(app)` builds the Celery app, keeps it in `app.extensions["celery"]`
and runs every task in the Flask app's context. The worker's entry point is
`contact_site.celery_app`. The database stays the source of truth: a task carries
no mail, it only says "deliver what is due", so a lost, repeated or late task can
neither lose nor duplicate a mail.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from billiard.process import current_process
from celery import Celery, Task, shared_task
from flask import Flask

from ..extensions import db
from ..logs import leave_to_root
from .context import LoopContext
from .timing import (
    BROKER_TIMEOUT_SECONDS,
    STOP_WAIT_SECONDS,
    TASK_BUDGET_SECONDS,
    VISIBILITY_TIMEOUT_SECONDS,
)
from .worker import claim_and_deliver, run_daily_jobs

log = logging.getLogger("contact_site.delivery")

# Redis re-delivers an unacknowledged task after its visibility timeout
# (docs/stack-pitfalls.md), so no task here waits for a countdown or runs long: retries
# are found by a sweep every DELIVERY_POLL_SECONDS, and one task delivers for at most
# TASK_BUDGET_SECONDS (timing.py).


def celery_settings(app: Flask) -> dict[str, Any]:
    """Celery settings from the Flask configuration."""
    return {
        "broker_url": app.config["CELERY_BROKER_URL"],
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT_SECONDS,
            "socket_timeout": BROKER_TIMEOUT_SECONDS,
            "socket_connect_timeout": BROKER_TIMEOUT_SECONDS,
        },
        # Without it, establishing the connection is retried for 4 s before failing.
        "broker_connection_timeout": BROKER_TIMEOUT_SECONDS,
        "broker_connection_retry_on_startup": True,
        # A task killed with its worker goes back to the queue instead of being acked.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "task_ignore_result": True,
        "worker_prefetch_multiplier": 1,
    }


def celery_init_app(app: Flask) -> Celery:
    """A Celery app whose tasks run in this Flask app's context (Flask's pattern)."""

    class FlaskTask(Task):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            with app.app_context():
                return self.run(*args, **kwargs)

    celery_app = Celery(app.name, task_cls=FlaskTask)
    celery_app.config_from_object(celery_settings(app))
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app


# Set when this process is told to stop (SIGTERM, a warm shutdown, a revoke with
# terminate): the batch in hand gives back its unsent mails at once.
stopping = threading.Event()


@shared_task(name="contact_site.deliver_due")
def deliver_due() -> int:
    """Deliver due mails, batch after batch, for a bounded time; the number claimed."""
    stopping.clear()  # a new task runs only when the worker is not shutting down
    _give_back_on_sigterm()
    context = LoopContext.here(stop=stopping)
    total, deadline = 0, time.monotonic() + TASK_BUDGET_SECONDS
    while time.monotonic() < deadline and not stopping.is_set():
        claimed = claim_and_deliver(context)
        if not claimed:
            return total
        total += claimed
    if not stopping.is_set():
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


class CeleryBackend:
    """The web process's side of the Celery backend: ask a worker to deliver now."""

    def start(self) -> None:
        """Nothing runs in the web process with this backend."""

    def wake(self) -> None:
        """Queue a delivery task for the mails just stored."""
        send_deliver_due()

    def stop(self, timeout: float = STOP_WAIT_SECONDS) -> None:
        """Nothing to stop in the web process."""


class Sweeper:
    """In the worker's main process: queue deliver_due every DELIVERY_POLL_SECONDS.

    This finds retries coming due and mails left by a worker that died, with no
    long countdowns (and no separate beat process) to manage.
    """

    def __init__(self, interval: float, app: Flask | None = None) -> None:
        self.interval = interval
        self.app = app  # whose daily jobs (retention) the sweeper runs
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
            if self.app is not None:
                run_daily_jobs(self.app)
            if self._stop.wait(self.interval):
                return


def _give_back_on_sigterm() -> None:
    """In a prefork pool process: the first SIGTERM gives the claims back, a second kills.

    Installed when a task starts, not at worker_process_init: billiard resets the
    child's signal handlers after that signal has run. Never in the main process,
    whose SIGTERM is Celery's warm shutdown (handled by worker_shutting_down).
    """
    if (current_process().name == "MainProcess"
            or threading.current_thread() is not threading.main_thread()):
        return

    previous = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, _frame: Any) -> None:
        log.info("SIGTERM: giving back the unsent mails of this worker process")
        stopping.set()
        # billiard's again: a second SIGTERM ends the process.
        signal.signal(signal.SIGTERM, previous or signal.SIG_DFL)

    if not getattr(signal.getsignal(signal.SIGTERM), "gives_back_claims", False):
        on_sigterm.gives_back_claims = True  # type: ignore[attr-defined]
        signal.signal(signal.SIGTERM, on_sigterm)


def _stop_pool_processes(pool: Any) -> None:
    """From the main process: tell each prefork pool process to give back its claims."""
    for pid in (getattr(pool, "info", None) or {}).get("processes", []):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:  # already gone
            pass


def connect_worker_signals(app: Flask) -> None:
    """In a Celery worker: sweep from the main process, fresh connections in each child,
    claims given back when the worker shuts down, and the app's log lines through Celery's."""
    from celery.signals import (
        after_setup_logger,
        worker_process_init,
        worker_ready,
        worker_shutdown,
        worker_shutting_down,
    )

    sweeper = Sweeper(app.config["DELIVERY_POLL_SECONDS"], app)
    pools: list[Any] = []

    def start_sweeper(sender: Any = None, **_kwargs: Any) -> None:
        pools.append(getattr(sender, "pool", None))
        sweeper.start()

    def stop_sweeper(**_kwargs: Any) -> None:
        sweeper.stop()

    def shutting_down(**_kwargs: Any) -> None:
        stopping.set()  # tasks run in this process (solo or threads pool)
        for pool in pools:
            _stop_pool_processes(pool)

    def fresh_connections(**_kwargs: Any) -> None:
        # A forked pool process must not share the parent's database connections.
        with app.app_context():
            db.engine.dispose(close=False)

    def log_through_celery(**_kwargs: Any) -> None:
        leave_to_root()  # Celery's root handler prints them: once, not twice

    # weak=False: the receivers are closures that nothing else keeps alive.
    worker_ready.connect(start_sweeper, weak=False)
    worker_shutting_down.connect(shutting_down, weak=False)
    worker_shutdown.connect(stop_sweeper, weak=False)
    worker_process_init.connect(fresh_connections, weak=False)
    after_setup_logger.connect(log_through_celery, weak=False)
