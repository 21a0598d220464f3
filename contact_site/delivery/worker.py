"""Delivering claimed mails over one connection per batch, and the loops that keep at it."""

from __future__ import annotations

import logging
import os
import smtplib
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from flask import Flask, current_app

from ..database import utcnow
from . import health, lease, outbox, smtp
from .compose import CRLFMessage, compose
from .lease import LeaseKeeper
from .models import OutboxMail, Status
from .pool import DeliveryPool, Wake, is_throttle, pool_of

# A loop woken a hair before a retry is due would find nothing and spin: it waits this much more.
WAKE_MARGIN_SECONDS = 0.05
# A loop woken for new mails waits this long first, so that the mails of a busy form's
# next submissions go out in the same claim (a claim and its commits cost as much as a
# few mails); nobody notices a mail a tenth of a second later.
GATHER_SECONDS = 0.1
# A loop keeps its connection this long after its last mail: a form posted to every few
# seconds would otherwise pay a connection (TLS handshake, login) per submission.
LINK_IDLE_SECONDS = 10.0

log = logging.getLogger("contact_site.delivery")


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


def deliver_due(should_stop: Callable[[], bool] | None = None,
                stop_event: threading.Event | None = None, limit: int | None = None,
                link: Link | None = None) -> int:
    """Claim due mails (up to `limit`, else DELIVERY_BATCH_SIZE) and send them; how many.

    A claim no bigger than one chunk (see LeaseKeeper) is marked in hand by the claim
    itself: a mail or two from a quiet form then cost two commits, not three.
    """
    in_hand = limit is not None and limit <= pool_of(current_app).chunk_size()
    rows = outbox.claim_due_mails(limit, in_hand=in_hand)
    if rows:
        deliver_batch(rows, should_stop, stop_event, link, in_hand)
    return len(rows)


def _share(pool: DeliveryPool) -> tuple[int, int]:
    """How many mails are due (counted up to a pool's worth) and how many this loop claims
    now (pool.claim_size); 0 when none are, so an idle wake-up costs a read, never the
    write lock."""
    batch = int(current_app.config["DELIVERY_BATCH_SIZE"])
    due = outbox.due_count(batch * pool.concurrency)
    return due, pool.claim_size(due, batch)


def deliver_batch(rows: list[OutboxMail], should_stop: Callable[[], bool] | None = None,
                  stop_event: threading.Event | None = None, link: Link | None = None,
                  in_hand: bool = False) -> None:
    """Send claimed mails over one SMTP connection, reconnecting when it breaks.

    The claims are kept alive by a LeaseKeeper for as long as the batch runs;
    `stop_event` makes it give back the unsent mails at once. With a `link`, the
    connection is taken from it and left in it for the next batch. `in_hand`: the
    claim marked them all in hand already.
    """
    app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
    pool = pool_of(app)
    keeper = LeaseKeeper(app, rows, stop_event, in_hand)
    keeper.chunk_size(pool.chunk_size)
    keeper.start()
    connection = link.take() if link is not None else None
    check = outbox.LastCheck()
    try:
        while True:
            # Every wait comes before the next mail is taken in hand: the rate cap
            # (DELIVERY_MAX_PER_MINUTE, when set), then the connection.
            slot = pool.limiter.take(stop_event)
            if slot is None:
                break
            if connection is None and keeper.has_waiting():
                connection = _connect(keeper, pool, should_stop)
                if connection is None:
                    return
            row = keeper.next_mail(should_stop)
            if row is None or connection is None:
                pool.limiter.give_back(slot)
                break
            prepared = _prepare(keeper, row, check)
            if prepared is None:  # nothing went to the server: its slot is not used up
                pool.limiter.give_back(slot)
                continue
            if not _send_one(connection, row, prepared, keeper, pool):
                smtp.discard(connection)
                connection = None
    finally:
        stopping = stop_event is not None and stop_event.is_set()
        if connection is not None and link is not None and not stopping \
                and smtp.usable(connection):
            link.keep(connection)
        elif connection is not None:
            smtp.close(connection)
        try:
            check.close()
        finally:
            keeper.finish()


def _connect(keeper: LeaseKeeper, pool: DeliveryPool,
             should_stop: Callable[[], bool] | None) -> smtp.TimeoutConnection | None:
    """A connection for the rest of the batch, or None once the batch's fate is recorded."""
    rest, started = keeper.unfinished(), time.monotonic()
    connection, error = smtp.open_connection()
    if isinstance(error, smtp.ConfigurationError):  # the operator must act
        keeper.flush()
        health.hold_for_config_error(rest, error.reason)
        return None
    if connection is None:
        if error is not None and is_throttle(error):
            log.warning("smtp server answered 421 at connect: %d delivery loop(s) for %.0fs",
                        pool.throttle(), pool.seconds_paused())
            if should_stop is not None and should_stop():  # this loop is paused: others carry on
                return None  # the batch is given back: no attempt counted
        reason = smtp.describe(error) if error is not None else "no connection"
        for other in rest:
            _conclude(keeper, other, Status.QUEUED, reason, started)
        return None
    health.clear_config_error()
    return connection  # type: ignore[no-any-return]


class Prepared(NamedTuple):
    """A mail composed and checked, about to be handed to the server."""

    message: CRLFMessage
    started: float  # when its attempt began, for the attempt's time


def _prepare(keeper: LeaseKeeper, row: OutboxMail, check: outbox.LastCheck) -> Prepared | None:
    """The mail composed, if it is still to be sent; None when it must not go.

    The last check before MAIL FROM: a mail whose row was deleted meanwhile (erasure,
    deletion, retention), though this batch holds it marked in hand, is skipped and
    nothing is recorded for it. Together with the mark this makes removal final:
    whatever a removal counted as cancelled was never marked before its commit, so
    no worker can send it after (its mark, a conditional UPDATE, finds no row); a
    mail it counted as in hand is sent after its commit only if its worker was past
    this check (in practice, the mail in DATA on each connection).
    """
    started = time.monotonic()
    try:
        message = compose(row.kind, row.submission, row.message_id, row.created_at)
    except Exception as error:  # a poison row, e.g. its attachment gone from disk
        if check.still_held(row):  # gone with its submission: nothing to record
            _conclude(keeper, row, Status.FAILED, f"cannot compose: {smtp.describe(error)}",
                      started)
        return None
    if not check.still_held(row):
        log.info("mail %s not sent: removed (or taken over) while its batch held it", row.id)
        return None
    return Prepared(message, started)


def _send_one(connection: smtp.TimeoutConnection, row: OutboxMail, prepared: Prepared,
              keeper: LeaseKeeper, pool: DeliveryPool) -> bool:
    """Send one mail and record the outcome; False when the connection is unusable."""
    message, started = prepared
    keeper.sending(connection)
    handed = time.monotonic()
    try:
        connection.send(message)
    except Exception as error:  # the delivery boundary: every failure is recorded
        pool.sent_in(time.monotonic() - handed)
        aborted = keeper.sent()
        if message.dispatched:  # 250 received; the break came after it
            _conclude(keeper, row, Status.SENT, None, started, f" (then {smtp.describe(error)})")
            return False
        if aborted is not None:
            _abandon(keeper, row, aborted, started)
            return False
        status = Status.FAILED if smtp.is_permanent(error) else Status.QUEUED
        _conclude(keeper, row, status, smtp.describe(error), started)
        if is_throttle(error):
            log.warning("smtp server answered 421: %d delivery loop(s) for %.0fs",
                        pool.throttle(), pool.seconds_paused())
        return smtp.usable(connection)
    pool.sent_in(time.monotonic() - handed)
    keeper.sent()
    _conclude(keeper, row, Status.SENT, None, started)
    return True


def _abandon(keeper: LeaseKeeper, row: OutboxMail, reason: str, started: float) -> None:
    """A send cut short by this worker: given back, left to the new holder, or retried."""
    if reason == lease.STOPPING:
        outbox.release(row)
        log.warning("mail %s abandoned: the worker is stopping; given back", row.id)
    elif reason == lease.CLAIM_LOST:
        log.warning("mail %s abandoned: its claim was taken over; left to its new holder",
                    row.id)
    else:
        _conclude(keeper, row, Status.QUEUED, f"abandoned: {reason}", started)


def _conclude(keeper: LeaseKeeper, row: OutboxMail, status: Status, error: str | None,
              started: float, note: str = "") -> None:
    """Hand one finished attempt to the keeper, which writes (and logs) it by group commit."""
    keeper.record(outbox.Attempt(row, status, error or "250", time.monotonic() - started, note))


def run_daily_jobs(app: Flask) -> None:
    """Call the jobs in app.extensions["contact_daily_jobs"] (retention); each knows if due."""
    for job in app.extensions.get("contact_daily_jobs", ()):
        try:
            job(app, utcnow())
        except Exception:  # a failing job must not stop delivery
            log.exception("daily job failed")


def run_delivery_loop(app: Flask, stop: threading.Event, wake: Wake | None = None,
                      on_idle: Callable[[], None] | None = None, index: int = 0) -> None:
    """Deliver due mails until `stop` is set; between passes, sleep until the next mail is
    due (at most DELIVERY_POLL_SECONDS) unless woken.

    `index` is this loop's place in the process's pool: a loop the pool has paused
    (after a 421) sends nothing until it may again. `on_idle` is called when no
    loop of the pool found anything to do.
    """
    wake = wake or Wake()
    poll = float(app.config["DELIVERY_POLL_SECONDS"])
    pool = pool_of(app)

    def should_stop() -> bool:
        return stop.is_set() or not pool.may_send(index)

    link, last_mail = Link(), time.monotonic()
    try:
        while not stop.is_set():
            if not pool.may_send(index):  # a wake-up is for a loop that may send: not taken
                stop.wait(min(poll, pool.seconds_paused() + WAKE_MARGIN_SECONDS))
                continue
            claimed, sleep, others_busy, backlog = _pass(app, pool, link, should_stop, stop,
                                                         wake, poll)
            if index == 0:
                run_daily_jobs(app)
            if claimed:
                last_mail = time.monotonic()
                if not backlog:  # it took all that was due: let the next ones gather
                    stop.wait(GATHER_SECONDS)
            else:
                if time.monotonic() - last_mail >= LINK_IDLE_SECONDS:
                    with app.app_context():
                        link.close()  # idle: no connection held open at the provider
                if on_idle is not None and others_busy == 0:
                    on_idle()
                if stop.is_set():
                    break
                if wake.wait(sleep):
                    stop.wait(GATHER_SECONDS)
    finally:
        with app.app_context():
            link.close()


def _pass(app: Flask, pool: DeliveryPool, link: Link, should_stop: Callable[[], bool],
          stop: threading.Event, wake: Wake, poll: float) -> tuple[int, float, int, bool]:
    """One claim and its batch: how many claimed, how long to sleep if none, loops still
    busy, and whether more was due than this loop took."""
    pool.busy(+1)
    due = share = 0
    try:
        with app.app_context():
            due, share = _share(pool)
            if due > share:  # more than this loop takes: another one may help
                wake.set()
            claimed = deliver_due(should_stop, stop, share, link) if share else 0
            sleep = poll if claimed else _idle_seconds(poll)
    except Exception:  # the loop must outlive a database hiccup; it is logged
        log.exception("delivery loop error; retrying in %ss", poll)
        claimed, sleep = 0, poll
    finally:
        others_busy = pool.busy(-1)
    return claimed, sleep, others_busy, due > share


def _idle_seconds(poll: float) -> float:
    """How long an idle loop may sleep: until the next retry is due or a claim lapses."""
    until = outbox.seconds_until_due()
    return poll if until is None else min(poll, until + WAKE_MARGIN_SECONDS)


def run_delivery_pool(app: Flask, stop: threading.Event, wake: Wake,
                      on_idle: Callable[[], None] | None = None) -> None:
    """DELIVERY_CONCURRENCY loops until `stop`: the first in this thread, the others beside it."""
    threads = [_loop_thread(app, stop, wake, index, on_idle)
               for index in range(1, app.config["DELIVERY_CONCURRENCY"])]
    for thread in threads:
        thread.start()
    try:
        run_delivery_loop(app, stop, wake, on_idle, index=0)
    finally:
        stop.set()
        wake.set_all()
        for thread in threads:
            thread.join()


def _loop_thread(app: Flask, stop: threading.Event, wake: Wake, index: int,
                 on_idle: Callable[[], None] | None = None) -> threading.Thread:
    return threading.Thread(target=run_delivery_loop, args=(app, stop, wake, on_idle, index),
                            name=f"contact-delivery-{index}", daemon=True)


class DeliveryThread:
    """The `thread` backend: DELIVERY_CONCURRENCY daemon loops per process, woken when mails
    are queued."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self._wake = Wake()
        self._threads: list[threading.Thread] = []
        self._pid = 0
        self._lock = threading.Lock()

    @property
    def _thread(self) -> threading.Thread | None:
        """The first loop's thread (the one that also runs the daily jobs)."""
        return self._threads[0] if self._threads else None

    def start(self) -> None:
        """Start DELIVERY_CONCURRENCY loops if this process has none (e.g. after a fork)."""
        with self._lock:
            if self.running:
                return
            self._stop.clear()
            self._pid = os.getpid()
            self._wake = Wake()  # a stopped one wakes every loop for good
            self._threads = [_loop_thread(self.app, self._stop, self._wake, index)
                             for index in range(self.app.config["DELIVERY_CONCURRENCY"])]
            for thread in self._threads:
                thread.start()

    @property
    def running(self) -> bool:
        """Whether this process's loops are delivering."""
        return (self._pid == os.getpid() and bool(self._threads)
                and any(thread.is_alive() for thread in self._threads))

    def wake(self) -> None:
        """Deliver now rather than at the next poll (only where the thread was started)."""
        self._wake.set()

    def stop(self, timeout: float = 30.0) -> None:
        """Give back the unsent claims at once, finish or abandon the mail in hand, and wait.

        `timeout=0` only asks (safe in a signal handler); the mail in hand is
        abandoned after lease.STOP_GRACE_SECONDS if it has not finished by then.
        """
        self._stop.set()
        self._wake.set_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
