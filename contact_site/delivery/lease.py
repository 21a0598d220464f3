"""A batch's claims and its mails in hand: kept alive while they are sent, given back on stop.

This module owns a mail *in hand* (docs/mail-lifecycle.md says why it exists), from
its mark to its end; the SQL statements are outbox.py's, the order they run in is here:

1. Marked. A claim no bigger than one chunk marks its mails in hand itself
   (`claim_batch`). Otherwise `LeaseKeeper.next_mail` marks the next chunk (as
   many mails as take about FLUSH_SECONDS to send, `DeliveryPool.chunk_size`) in
   the commit that also writes the finished attempts and renews the batch
   (outbox.settle). No mail is handed out before its mark is committed.
2. Checked. `LeaseKeeper.still_held` is the last check, just before MAIL FROM: a
   mail whose row was deleted meanwhile (erasure, deletion, retention) or whose
   claim was taken over is not sent.
3. Cleared. The mark goes with the claim when the attempt's outcome is written
   (`record`, by group commit), when the mail is given back (`give_back`), and,
   for the mails waiting behind a send slower than UNMARK_AFTER_SECONDS, by the
   heartbeat (outbox.unmark), so that only the mail on the wire reads as in hand.
4. Read. A claim that lapsed with the mark set was lost mid-send: a takeover
   (outbox.claim_due_mails). A removal counts a marked mail as possibly on the
   wire, an unmarked one as cancelled (records/privacy.py).

A `LeaseKeeper` runs beside the thread that sends one batch. It renews the claim
on every mail not yet finished well before the lease runs out, however long one
mail takes, so a live worker never loses a claim to another worker. It aborts a
send that would outlive its claim (renewals failing), the claim already lost, a
send past MAX_SECONDS_PER_MAIL, and, once told to stop, gives back at once every
mail not yet started and abandons the one in hand after STOP_GRACE_SECONDS.

The keepers of one process share one heartbeat thread (however many delivery
loops run), so a process's threads stay bounded: its loops plus one.

Outcomes are written by group commit: a keeper holds finished attempts in memory
and writes them in the commit that renews the batch and marks the next mails in
hand. No outcome waits more than about FLUSH_SECONDS, however long the mail after
it takes (the heartbeat writes it). A worker that dies loses at most those
unwritten outcomes: their mails are sent again (at least once), and its marked
mails all count a takeover.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from flask import current_app, has_app_context
from sqlalchemy import Connection, bindparam, select

from ..extensions import db
from . import outbox
from .context import LoopContext
from .models import OutboxMail, Status
from .pool import MAX_CHUNK, DeliveryPool
from .timing import (
    FLUSH_SECONDS,
    MAX_SECONDS_PER_MAIL,
    RENEW_FRACTION,
    STOP_GRACE_SECONDS,
    TICK_SECONDS,
    UNMARK_AFTER_SECONDS,
)

log = logging.getLogger("contact_site.delivery")

STOPPING, CLAIM_LOST, LEASE_AT_RISK, TOO_LONG = (
    "stopping", "claim lost", "claim could not be renewed", "took too long")


def claim_batch(pool: DeliveryPool, limit: int | None = None) -> tuple[list[OutboxMail], bool]:
    """Claim due mails (up to `limit`, else DELIVERY_BATCH_SIZE); and whether the claim
    marked them in hand.

    A claim no bigger than one chunk is marked in hand by the claim itself: a mail or
    two from a quiet form then cost two commits, not three.
    """
    in_hand = limit is not None and limit <= pool.chunk_size()
    return outbox.claim_due_mails(limit, in_hand=in_hand), in_hand


class LeaseKeeper:
    """Holds one batch's claims from a heartbeat thread; hands out its mails one by one."""

    def __init__(self, context: LoopContext, rows: list[OutboxMail],
                 in_hand: bool = False) -> None:
        self.app = context.app
        self.lease = float(self.app.config["DELIVERY_CLAIM_SECONDS"])
        self._context = context
        self._lock = threading.Lock()
        self._waiting = list(rows)
        self._in_hand: OutboxMail | None = None
        self._connection: Any = None  # set only while the mail in hand is being sent
        self._send_started = 0.0
        self._abort_reason: str | None = None
        self._stop_seen: float | None = None
        # Conservative: measured before each renewal was sent.
        self._held_until = time.monotonic() + self.lease
        self._renewed_at = time.monotonic()
        self._done = threading.Event()
        self._beating = threading.Lock()  # held while the heartbeat works on this batch
        # Waiting mails whose "in hand" mark is committed (by the claim itself, or later).
        self._marked: set[int] = {row.id for row in rows} if in_hand else set()
        self._finished: list[outbox.Attempt] = []  # attempts not yet written
        self._finished_since = 0.0  # when the oldest of them finished
        self._writing = threading.Lock()  # one writer of this batch's attempts at a time
        self._check = LastCheck()

    def start(self) -> None:
        """Start the heartbeat."""
        _heartbeat().add(self)

    def next_mail(self) -> OutboxMail | None:
        """The next mail to send, with a live lease and marked in hand; None when done.

        While the mails marked by the last commit last, and the lease is fresh, this
        costs no database round trip; otherwise one commit writes the finished
        attempts, renews the batch and marks the next chunk (DeliveryPool.chunk_size).
        """
        while True:
            with self._lock:
                self._in_hand = None
                if self._stopping() or self._context.paused() or not self._waiting:
                    break
                row = self._waiting[0]
                if row.id in self._marked and self._fresh():
                    return self._take(row)
                rest = list(self._waiting)
                chunk = rest[:max(1, min(self._context.pool.chunk_size(), MAX_CHUNK))]
            started = time.monotonic()
            held = self._write(rest, chunk)
            with self._lock:
                self._renewed(started)
                self._waiting = [r for r in self._waiting if r.id in held]
                self._marked = {r.id for r in chunk if r.id in held}
                if row.id not in held:  # taken over: it belongs to another worker now
                    continue
                return self._take(row)
        self.give_back()
        return None

    def record(self, attempt: outbox.Attempt) -> None:
        """A finished attempt, written with the next commit of this batch."""
        with self._lock:
            if not self._finished:
                self._finished_since = time.monotonic()
            self._finished.append(attempt)

    def flush(self) -> None:
        """Write the finished attempts now."""
        self._write([], [])

    def _take(self, row: OutboxMail) -> OutboxMail:
        """Hand out `row` (called with the lock held)."""
        self._waiting.remove(row)
        self._marked.discard(row.id)
        self._in_hand, self._abort_reason = row, None
        return row

    def _fresh(self) -> bool:
        """Whether the claims were renewed (successfully) within the last RENEW_FRACTION of
        the lease: recently enough to send without renewing them."""
        return self._held_until - time.monotonic() > self.lease * (1 - RENEW_FRACTION)

    def _write(self, renew: list[OutboxMail], starting: list[OutboxMail]) -> set[int]:
        """One commit: the finished attempts, renewed claims, the next chunk in hand."""
        with self._writing:
            with self._lock:
                attempts, self._finished = self._finished, []
            if not attempts and not renew:
                return set()
            try:
                if has_app_context() and current_app._get_current_object() is self.app:  # type: ignore[attr-defined]
                    return outbox.settle(attempts, renew, starting)
                with self.app.app_context():  # the heartbeat's thread has none
                    return outbox.settle(attempts, renew, starting)
            except BaseException:
                with self._lock:  # kept, to be written at the next try
                    self._finished[:0] = attempts
                raise

    def has_waiting(self) -> bool:
        """Whether mails are left to send and this batch is not told to stop."""
        with self._lock:
            return bool(self._waiting) and not self._stopping()

    def unfinished(self) -> list[OutboxMail]:
        """The mail in hand and those waiting behind it."""
        with self._lock:
            return ([self._in_hand] if self._in_hand else []) + list(self._waiting)

    def still_held(self, row: OutboxMail) -> bool:
        """The last check before MAIL FROM: whether the mail may still go.

        A mail whose row was deleted meanwhile (erasure, deletion, retention), though
        this batch holds it marked in hand, must not be sent. Together with the mark
        this makes removal final: whatever a removal counted as cancelled was never
        marked before its commit, so no worker can send it after (its mark, a
        conditional UPDATE, finds no row); a mail it counted as in hand is sent after
        its commit only if its worker was past this check (in practice, the mail in
        DATA on each connection).
        """
        return self._check.still_held(row)

    def sending(self, connection: Any) -> None:
        """The mail in hand is now being sent over `connection`."""
        with self._lock:
            self._connection, self._send_started = connection, time.monotonic()

    def sent(self) -> str | None:
        """The send has ended; why it was aborted, if it was."""
        with self._lock:
            self._connection = None
            return self._abort_reason

    def give_back(self) -> None:
        """Release at once every claim not yet started (idempotent)."""
        with self._lock:
            rows, self._waiting = self._waiting, []
        if rows:
            with self.app.app_context():
                count = outbox.release_all(rows)
            log.info("gave back %d unsent mail(s): %s", count, [row.id for row in rows])

    def finish(self) -> None:
        """Stop the heartbeat, write the finished attempts, give back what was not started."""
        self._done.set()
        _heartbeat().remove(self)
        with self._beating:  # a beat in progress for this batch ends first
            pass
        try:
            self._check.close()
        finally:
            try:
                self.flush()
            finally:
                self.give_back()

    def _stopping(self) -> bool:
        return self._stop_seen is not None or self._context.stop.is_set()

    def _renewed(self, started: float) -> None:
        self._renewed_at, self._held_until = started, started + self.lease

    def tick(self) -> None:
        """One heartbeat: renew when due, give back on stop, abort a send that must not go on."""
        with self._beating:
            if self._done.is_set():
                return
            try:
                self._beat()
            except Exception:  # the heartbeat must outlive a database hiccup; it is logged
                log.warning("could not renew the claims of this batch", exc_info=True)
                self._renewed_at = time.monotonic()  # try again at the next interval
            try:
                self._unmark_behind_slow_send()
            except Exception:  # kept marked: a removal counts them as in hand, no more
                log.warning("could not unmark the mails waiting in this batch", exc_info=True)
            self._watch()

    def _unmark_behind_slow_send(self) -> None:
        """Unmark the waiting mails when the send in hand has lasted UNMARK_AFTER_SECONDS."""
        with self._lock:
            if not self._marked_behind_slow_send():
                return
        with self._writing:  # in order with the sender's marking commits
            with self._lock:
                rows = self._marked_behind_slow_send()
                self._marked.difference_update(row.id for row in rows)
            if rows:
                with self.app.app_context():
                    outbox.unmark(rows)

    def _marked_behind_slow_send(self) -> list[OutboxMail]:
        """The waiting mails marked in hand, if the send in hand is slow (lock held)."""
        if self._connection is None or \
                time.monotonic() - self._send_started <= UNMARK_AFTER_SECONDS:
            return []
        return [row for row in self._waiting if row.id in self._marked]

    def _beat(self) -> None:
        """Give back on stop; write attempts finished a while ago; renew every RENEW_FRACTION
        of the lease."""
        if self._context.stop.is_set():
            if self._stop_seen is None:
                self._stop_seen = time.monotonic()
                self.give_back()
        with self._lock:
            overdue = bool(self._finished) and \
                time.monotonic() - self._finished_since >= FLUSH_SECONDS
        if time.monotonic() - self._renewed_at < self.lease * RENEW_FRACTION:  # not yet due
            if overdue:  # the sender is busy with a long mail: write them from here
                self.flush()
            return
        rest, started = self.unfinished(), time.monotonic()
        held = self._write(rest, [])
        with self._lock:
            self._renewed(started)
            if self._in_hand is not None and self._in_hand.id not in held:
                self._abort(CLAIM_LOST)

    def _watch(self) -> None:
        """Abort a send that must not go on."""
        now = time.monotonic()
        with self._lock:
            if self._connection is None:
                return
            if self._held_until - now < self.lease * RENEW_FRACTION:
                self._abort(LEASE_AT_RISK)
            elif now - self._send_started > MAX_SECONDS_PER_MAIL:
                self._abort(TOO_LONG)
            elif self._stop_seen is not None and now - self._stop_seen > STOP_GRACE_SECONDS:
                self._abort(STOPPING)

    def _abort(self, reason: str) -> None:
        """Cut the connection under the send (called with the lock held)."""
        if self._connection is None or self._abort_reason is not None:
            return
        self._abort_reason = reason
        sock = getattr(self._connection.host, "sock", None)
        log.warning("mail %s: aborting the send: %s", getattr(self._in_hand, "id", "?"), reason)
        try:  # shutdown, not close: the sending thread's blocked call returns at once
            if sock is not None:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class Heartbeat:
    """One thread per process that ticks every running LeaseKeeper; it ends when none is left."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._keepers: list[LeaseKeeper] = []
        self._thread: threading.Thread | None = None

    def add(self, keeper: LeaseKeeper) -> None:
        """Tick this keeper from now on, starting the thread if it is not running."""
        with self._lock:
            self._keepers.append(keeper)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="contact-lease",
                                                daemon=True)
                self._thread.start()

    def remove(self, keeper: LeaseKeeper) -> None:
        """Tick this keeper no more."""
        with self._lock:
            if keeper in self._keepers:
                self._keepers.remove(keeper)

    def _run(self) -> None:
        while True:
            time.sleep(TICK_SECONDS)
            with self._lock:
                keepers = list(self._keepers)
                if not keepers:
                    self._thread = None  # the next add starts a fresh thread
                    return
            for keeper in keepers:
                keeper.tick()


_heartbeats: dict[int, Heartbeat] = {}
_heartbeats_lock = threading.Lock()


def _heartbeat() -> Heartbeat:
    """This process's heartbeat (a forked child gets its own: threads do not survive a fork)."""
    with _heartbeats_lock:
        pid = os.getpid()
        if pid not in _heartbeats:
            _heartbeats.clear()
            _heartbeats[pid] = Heartbeat()
        return _heartbeats[pid]


# A mail still held by the claim that took it; built once: building it costs more than
# running it.
_STILL_HELD = select(OutboxMail.id).where(
    OutboxMail.id == bindparam("mail_id"), OutboxMail.claim_token == bindparam("token"),
    OutboxMail.status == Status.SENDING)


class LastCheck:
    """Whether a mail this worker holds may still go: asked just before its MAIL FROM.

    Erasure, deletion and retention remove a mail by deleting its row, which may
    happen while a batch holds it, marked in hand. The check is one primary-key read
    per mail, over a connection of its own in autocommit kept for the batch: no
    transaction is left open while the mail is sent (on SQLite it would pin an old
    snapshot), and none is begun and ended around each read (a few round trips).
    """

    def __init__(self) -> None:
        self._connection: Connection | None = None

    def still_held(self, row: OutboxMail) -> bool:
        """Whether the row is still there and this worker's claim still holds it."""
        if self._connection is None:
            self._connection = db.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT")
        found = self._connection.execute(_STILL_HELD, {"mail_id": row.id,
                                                       "token": row.claim_token})
        return found.first() is not None

    def close(self) -> None:
        """Give the connection back to the pool."""
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()
