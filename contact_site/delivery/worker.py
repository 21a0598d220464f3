"""Delivering claimed mails over one connection per batch, and the loops that keep at it."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from flask import Flask, current_app

from ..daily_jobs import daily_jobs_of
from ..database import utcnow
from . import health, lease, outbox, scan_gate, smtp, webhook_delivery
from .context import LoopContext
from .inbox_mail import compose_row
from .lease import LeaseKeeper
from .mime import CRLFMessage
from .models import MailKind, OutboxMail, Status
from .pool import DeliveryPool, Wake, is_throttle
from .timing import GATHER_SECONDS, LINK_IDLE_SECONDS, STOP_WAIT_SECONDS, WAKE_MARGIN_SECONDS
from .webhook_delivery import WebhookLoop

log = logging.getLogger("contact_site.delivery")


def claim_and_deliver(context: LoopContext | None = None, limit: int | None = None) -> int:
    """Claim due mails (up to `limit`, else DELIVERY_BATCH_SIZE; none for 0) and send them,
    then the due webhook deliveries unless the context leaves them to a WebhookLoop; how
    many of both.

    Without a context, a one-off call in the current app (a Celery task, a test).
    """
    context = context or LoopContext.here()
    outage = context.pool.outage
    claimed = 0
    if limit != 0 and outage.may_try():
        try:
            rows, in_hand = lease.claim_batch(context.pool, limit)
            if rows:
                deliver_batch(rows, context, in_hand)
            claimed = len(rows)
        finally:
            outage.probe_over()
    if not context.webhooks:
        return claimed
    return claimed + webhook_delivery.deliver_due_webhooks(context.stop)


def _share(pool: DeliveryPool) -> tuple[int, int]:
    """How many mails are due (counted up to a pool's worth) and how many this loop claims
    now (pool.claim_size); 0 when none are, so an idle wake-up costs a read, never the
    write lock."""
    if pool.outage.waiting():  # the server is down: mails wait for the next probe
        return 0, 0
    batch = int(current_app.config["DELIVERY_BATCH_SIZE"])
    due = outbox.due_count(batch * pool.concurrency)
    return due, pool.claim_size(due, batch)


def deliver_batch(rows: list[OutboxMail], context: LoopContext | None = None,
                  in_hand: bool = False) -> None:
    """Send claimed mails over one SMTP connection, reconnecting when it breaks.

    The claims are kept alive by a LeaseKeeper for as long as the batch runs;
    `context.stop` makes it give back the unsent mails at once. With a
    `context.link`, the connection is taken from it and left in it for the next
    batch. `in_hand`: the claim marked them all in hand already.
    """
    context = context or LoopContext.here()
    keeper = LeaseKeeper(context, rows, in_hand)
    keeper.start()
    batch = _Batch(context, keeper)
    try:
        batch.send_all()
    finally:
        try:
            batch.leave_connection()
        finally:
            keeper.finish()


class _Batch:
    """One batch on its way: the keeper that hands out its mails, and the connection."""

    def __init__(self, context: LoopContext, keeper: LeaseKeeper) -> None:
        self.context, self.keeper = context, keeper
        self.connection = context.link.take() if context.link is not None else None

    def send_all(self) -> None:
        """Send the mails one by one until none is left or the batch must stop."""
        limiter = self.context.pool.limiter
        while True:
            # Every wait comes before the next mail is taken in hand: the rate cap
            # (DELIVERY_MAX_PER_MINUTE, when set), then the connection.
            slot = limiter.take(self.context.stop)
            if slot is None:
                return
            if self.connection is None and self.keeper.has_waiting():
                self.connection = _connect(self.keeper, self.context)
                if self.connection is None:
                    return
            row = self.keeper.next_mail()  # marked in hand, with a live lease
            if row is None or self.connection is None:
                limiter.give_back(slot)
                return
            prepared = _prepare(self.keeper, row)
            if prepared is None:  # nothing went to the server: its slot is not used up
                limiter.give_back(slot)
                continue
            if not _send_one(self.connection, row, prepared, self.keeper, self.context.pool):
                smtp.discard(self.connection)
                self.connection = None

    def leave_connection(self) -> None:
        """Keep the connection for the loop's next batch if it may serve, else QUIT it."""
        connection, self.connection = self.connection, None
        if connection is None:
            return
        link = self.context.link
        if link is not None and not self.context.stop.is_set() and smtp.usable(connection):
            link.keep(connection)
        else:
            smtp.close(connection)


def _connect(keeper: LeaseKeeper, context: LoopContext) -> smtp.TimeoutConnection | None:
    """A connection for the rest of the batch, or None once the batch's fate is recorded."""
    rest, started = keeper.unfinished(), time.monotonic()
    connection, error = context.connect()
    _note_outage(context, connection, error)
    if isinstance(error, smtp.ConfigurationError):  # the operator must act
        keeper.flush()
        health.hold_for_config_error(rest, error.reason)
        return None
    if connection is None:
        if error is not None and is_throttle(error):
            log.warning("smtp server answered 421 at connect: %d delivery loop(s) for %.0fs",
                        context.pool.throttle(), context.pool.seconds_paused())
            if context.should_stop():  # this loop is paused (or stopping): others carry on
                return None  # the batch is given back: no attempt counted
        reason = smtp.describe_smtp_error(error) if error is not None else "no connection"
        for other in rest:
            _conclude(keeper, other, Status.QUEUED, reason, started)
        return None
    health.clear_config_error()
    return connection  # type: ignore[no-any-return]


def _note_outage(context: LoopContext, connection: object,
                 error: BaseException | None) -> None:
    """Tell the pool whether the server answered (a connection, a 421, a refused login: it
    is up) or could not be reached (it is down: the next probe waits an interval)."""
    if connection is not None or isinstance(error, smtp.ConfigurationError) or (
            error is not None and is_throttle(error)):
        context.pool.outage.answered()
    else:
        context.pool.outage.refused(float(context.app.config["DELIVERY_RETRY_BASE_SECONDS"]))


class Prepared(NamedTuple):
    """A mail composed and checked, about to be handed to the server."""

    message: CRLFMessage
    started: float  # when its attempt began, for the attempt's time


def _prepare(keeper: LeaseKeeper, row: OutboxMail) -> Prepared | None:
    """The mail composed, if it is still to be sent; None when it must not go.

    A mail removed while its batch held it is skipped with nothing recorded (the
    keeper's last check, see LeaseKeeper.still_held).
    """
    started = time.monotonic()
    held = scan_gate.hold_reason(row)  # never raises for the scanner: it answers unscanned
    if held is not None:
        if keeper.still_held(row):
            _conclude(keeper, row, Status.QUEUED, held, started)
        return None
    try:
        message = compose_row(row)
    except Exception as error:  # a poison row, e.g. its attachment gone from disk
        if keeper.still_held(row):  # gone with its submission: nothing to record
            reason = f"cannot compose: {smtp.describe_smtp_error(error)}"
            _conclude(keeper, row, Status.FAILED, reason, started)
        return None
    if not keeper.still_held(row):
        log.info("mail %s not sent: removed (or taken over) while its batch held it", row.id)
        return None
    return Prepared(message, started)


def _send_one(connection: smtp.TimeoutConnection, row: OutboxMail, prepared: Prepared,
              keeper: LeaseKeeper, pool: DeliveryPool, note: str = "") -> bool:
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
            note = f" (then {smtp.describe_smtp_error(error)})"
            _conclude(keeper, row, Status.SENT, None, started, note)
            return False
        if aborted is not None:
            _abandon(keeper, row, aborted, started)
            return False
        smaller = _without_files(row, message, error) if smtp.usable(connection) else None
        if smaller is not None:
            return _send_one(connection, row, Prepared(smaller, started), keeper, pool,
                             f" (without its files: {smtp.describe_smtp_error(error)})")
        status = Status.FAILED if smtp.is_permanent(error) else Status.QUEUED
        _conclude(keeper, row, status, smtp.describe_smtp_error(error), started)
        if is_throttle(error):
            log.warning("smtp server answered 421: %d delivery loop(s) for %.0fs",
                        pool.throttle(), pool.seconds_paused())
        return smtp.usable(connection)
    pool.sent_in(time.monotonic() - handed)
    keeper.sent()
    _conclude(keeper, row, Status.SENT, None, started, note)
    return True


def _without_files(row: OutboxMail, message: CRLFMessage,
                   error: BaseException) -> CRLFMessage | None:
    """The owner's mail again without its files, saying why, when the server refused it for
    its size; None for any other mail or refusal (the files stay in the console)."""
    if (row.kind != MailKind.OWNER or not message.file_attachments
            or not smtp.refused_for_size(error)):
        return None
    log.warning("mail %s refused for its size; sending it again without its files", row.id)
    try:
        return compose_row(row, files_refused=smtp.describe_smtp_error(error))
    except Exception:  # noqa: BLE001 -- the refusal itself is recorded instead
        log.exception("mail %s could not be composed without its files", row.id)
        return None


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
    """Call the app's daily jobs (retention, the audit purge); each knows if it is due."""
    for job in daily_jobs_of(app):
        try:
            job(app, utcnow())
        except Exception:  # a failing job must not stop delivery
            log.exception("daily job failed")


class Pass(NamedTuple):
    """What one pass of a loop (a claim and its batch) came to."""

    claimed: int
    sleep: float  # how long to sleep if nothing was claimed
    others_busy: int  # loops of the pool still in a pass
    backlog: bool  # more was due than this loop took


def run_delivery_loop(context: LoopContext, on_idle: Callable[[], None] | None = None) -> None:
    """Deliver due mails until `context.stop` is set; between passes, sleep until the next
    mail is due (at most DELIVERY_POLL_SECONDS) unless woken.

    A loop the pool has paused (after a 421) sends nothing until it may again.
    `on_idle` is called when no loop of the pool found anything to do.
    """
    poll = float(context.app.config["DELIVERY_POLL_SECONDS"])
    last_mail = time.monotonic()
    try:
        while not context.stop.is_set():
            if context.paused():  # a wake-up is for a loop that may send: not taken
                context.stop.wait(min(poll, context.pool.seconds_paused() + WAKE_MARGIN_SECONDS))
                continue
            done = _pass(context, poll)
            if context.index == 0:
                run_daily_jobs(context.app)
            if done.claimed:
                last_mail = time.monotonic()
                if not done.backlog:  # it took all that was due: let the next ones gather
                    context.stop.wait(GATHER_SECONDS)
            else:
                _rest(context, done, time.monotonic() - last_mail, on_idle)
    finally:
        _close_link(context)


def _rest(context: LoopContext, done: Pass, idle: float,
          on_idle: Callable[[], None] | None) -> None:
    """After a pass that found nothing: drop an idle connection, then sleep unless stopping."""
    if idle >= LINK_IDLE_SECONDS:
        _close_link(context)  # idle: no connection held open at the provider
    if on_idle is not None and done.others_busy == 0:
        on_idle()
    if not context.stop.is_set() and context.wake.wait(done.sleep):
        context.stop.wait(GATHER_SECONDS)


def _close_link(context: LoopContext) -> None:
    """QUIT the connection the loop keeps between batches, if any."""
    if context.link is not None:
        with context.app.app_context():
            context.link.close()


def _pass(context: LoopContext, poll: float) -> Pass:
    """One claim and its batch: how many claimed, how long to sleep if none, loops still
    busy, and whether more was due than this loop took."""
    pool = context.pool
    pool.busy(+1)
    due = share = 0
    try:
        with context.app.app_context():
            due, share = _share(pool)
            if due > share:  # more than this loop takes: another one may help
                context.wake.set()
            claimed = claim_and_deliver(context, share)
            sleep = poll if claimed else _idle_seconds(pool, poll)
    except Exception:  # the loop must outlive a database hiccup; it is logged
        log.exception("delivery loop error; retrying in %ss", poll)
        claimed, sleep = 0, poll
    finally:
        others_busy = pool.busy(-1)
    return Pass(claimed, sleep, others_busy, due > share)


def _idle_seconds(pool: DeliveryPool, poll: float) -> float:
    """How long an idle loop may sleep: until the next retry is due or a claim lapses,
    or while the server is down, until its next probe."""
    until = pool.outage.seconds_to_probe()
    if until is None:
        until = outbox.seconds_until_due()
    return poll if until is None else min(poll, until + WAKE_MARGIN_SECONDS)


def run_delivery_pool(app: Flask, stop: threading.Event, wake: Wake,
                      on_idle: Callable[[], None] | None = None) -> None:
    """DELIVERY_CONCURRENCY loops until `stop`: the first in this thread, the others beside it."""
    contexts = [LoopContext.for_loop(app, stop, wake, index)
                for index in range(app.config["DELIVERY_CONCURRENCY"])]
    hooks = WebhookLoop(app, stop)

    def idle() -> None:  # every mail loop found nothing: so did the webhooks' last pass
        if on_idle is not None and hooks.idle.is_set():
            on_idle()

    threads = [hooks.thread(), *(_loop_thread(context, idle) for context in contexts[1:])]
    for thread in threads:
        thread.start()
    try:
        run_delivery_loop(contexts[0], idle)
    finally:
        stop.set()
        wake.set_all()
        hooks.close()
        for thread in threads:
            thread.join()


def _loop_thread(context: LoopContext,
                 on_idle: Callable[[], None] | None = None) -> threading.Thread:
    return threading.Thread(target=run_delivery_loop, args=(context, on_idle),
                            name=f"contact-delivery-{context.index}", daemon=True)


class DeliveryThread:
    """The `thread` backend: DELIVERY_CONCURRENCY daemon loops per process, woken when mails
    are queued."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._stop = threading.Event()
        self._wake = Wake()
        self._threads: list[threading.Thread] = []
        self._hooks: WebhookLoop | None = None
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
            self._hooks = WebhookLoop(self.app, self._stop)
            self._threads = [
                *(_loop_thread(LoopContext.for_loop(self.app, self._stop, self._wake, index))
                  for index in range(self.app.config["DELIVERY_CONCURRENCY"])),
                self._hooks.thread()]
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
        if self._hooks is not None:
            self._hooks.wake.set()

    def stop(self, timeout: float = STOP_WAIT_SECONDS) -> None:
        """Give back the unsent claims at once, finish or abandon the mail in hand, and wait.

        `timeout=0` only asks (safe in a signal handler); the mail in hand is
        abandoned after timing.STOP_GRACE_SECONDS if it has not finished by then.
        """
        self._stop.set()
        self._wake.set_all()
        if self._hooks is not None:
            self._hooks.close()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
