"""One process's delivery pool: how many loops may send now, and how fast.

DELIVERY_CONCURRENCY loops each hold their own SMTP connection and claim their
own batches. A 421 reply (the provider's "too many connections" or "service not
available") halves the loops allowed to send, down to one, for THROTTLE_SECONDS;
then all may send again. DELIVERY_MAX_PER_MINUTE, when set, spaces the mails
handed to the provider evenly, one every 60/N seconds, across all the loops of
this process (a token bucket holding one token): the cap is per process.
A server that refuses connections is probed, not hammered (`Outage`).
"""

from __future__ import annotations

import os
import smtplib
import threading
import time
from dataclasses import dataclass

from flask import Flask

from ..app_state import state_of
from .timing import BATCH_SECONDS, FLUSH_SECONDS, THROTTLE_SECONDS

THROTTLED = 421
# Mails marked in hand by one commit, at most: what a worker's death sends twice.
MAX_CHUNK = 32
SEND_TIME_WEIGHT = 0.2  # of the newest send in the running average


def is_throttle(error: BaseException) -> bool:
    """Whether the server answered 421: it wants fewer connections or a pause."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return any(code == THROTTLED for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return error.smtp_code == THROTTLED
    return False


class RateLimiter:
    """At most `per_minute` takes a minute, spaced evenly; shared by the loops of a process."""

    def __init__(self, per_minute: int | None) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._lock = threading.Lock()
        self._next = 0.0  # monotonic time at which the next take is allowed

    def take(self, stop: threading.Event | None = None) -> float | None:
        """Wait for this caller's slot and return it; None if `stop` was set meanwhile."""
        if not self.interval:
            return 0.0
        with self._lock:  # reserve a slot: each caller waits for its own
            slot = max(time.monotonic(), self._next)
            self._next = slot + self.interval
        wait = slot - time.monotonic()
        if wait > 0 and (stop or threading.Event()).wait(wait):
            self.give_back(slot)
            return None
        return slot

    def give_back(self, slot: float) -> None:
        """Return an unused slot, unless another caller has reserved one after it."""
        with self._lock:
            if self.interval and self._next == slot + self.interval:
                self._next = slot


def fitting(seconds: float, each: float | None, most: int) -> int:
    """How many items taking `each` seconds go in `seconds`, between 1 and `most`; 1 while
    `each` has not been measured."""
    if each is None:
        return 1
    return max(1, min(most, int(seconds / max(each, 1e-4))))


class Wake:
    """Wake-ups for a pool's idle loops: one loop per wake-up, one wake-up pending at most.

    A shared Event would wake every loop for each submission, and all but one would
    find nothing to do (a read, a claim of nothing, a commit); several pending
    wake-ups would likewise split a busy form's submissions into a claim each. The
    loop woken gathers what is due (timing.GATHER_SECONDS), and one that finds more
    than its share passes a wake-up on. `set_all` (stopping) wakes them all, for good.
    """

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._pending = False
        self._everyone = False

    def set(self) -> None:
        """Wake one idle loop, or the next one to wait."""
        with self._condition:
            self._pending = True
            self._condition.notify()

    def set_all(self) -> None:
        """Wake every loop, now and whenever they wait again."""
        with self._condition:
            self._everyone = True
            self._condition.notify_all()

    def wait(self, timeout: float | None = None) -> bool:
        """Sleep until woken (True) or until `timeout` passes (False)."""
        with self._condition:
            if not (self._pending or self._everyone):
                self._condition.wait(timeout)
            if self._pending:
                self._pending = False
                return True
            return self._everyone


class Outage:
    """The server refusing connections, as this process last found it.

    While it lasts, new mails wait: one loop at a time probes the server, once per
    interval (the first retry's delay), with the mails then due. Otherwise every new
    submission would wake a loop to claim its mails, fail to connect and record the
    failure, each a write that the visitors' own POSTs wait behind.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._probe_at: float | None = None  # monotonic; None while the server answers
        self._probing = False

    def waiting(self) -> bool:
        """Whether mails must wait now: the server is down and its next probe not due."""
        with self._lock:
            return self._probe_at is not None and (
                self._probing or time.monotonic() < self._probe_at)

    def may_try(self) -> bool:
        """Whether this caller may connect now; while down, only the one that takes the probe."""
        with self._lock:
            if self._probe_at is None:
                return True
            if self._probing or time.monotonic() < self._probe_at:
                return False
            self._probing = True
            return True

    def probe_over(self) -> None:
        """The caller that took the probe is done (it may have found no mail to send):
        the next probe is for whoever comes once it is due."""
        with self._lock:
            self._probing = False

    def refused(self, interval: float) -> None:
        """A connection failed: wait `interval` before the next probe."""
        with self._lock:
            self._probe_at, self._probing = time.monotonic() + interval, False

    def answered(self) -> None:
        """A connection was made: mails flow again."""
        with self._lock:
            self._probe_at, self._probing = None, False

    def seconds_to_probe(self) -> float | None:
        """How long until the next probe (None when the server is not known to be down)."""
        with self._lock:
            if self._probe_at is None:
                return None
            return max(0.0, self._probe_at - time.monotonic())


class DeliveryPool:
    """The shared state of one process's delivery loops."""

    def __init__(self, concurrency: int, per_minute: int | None) -> None:
        self.concurrency = concurrency
        self.limiter = RateLimiter(per_minute)
        self.outage = Outage()
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._active = concurrency
        self._throttled_until = 0.0
        self._busy = 0
        self._send_seconds: float | None = None  # running average; None before the first

    def active(self) -> int:
        """How many loops may send now (all, unless a 421 lowered it a moment ago)."""
        with self._lock:
            if self._active < self.concurrency and time.monotonic() >= self._throttled_until:
                self._active = self.concurrency
            return self._active

    def may_send(self, index: int) -> bool:
        """Whether loop `index` (0-based) may send now."""
        return index < self.active()

    def seconds_paused(self) -> float:
        """How long the lowered concurrency lasts yet (0 when not lowered)."""
        with self._lock:
            return max(0.0, self._throttled_until - time.monotonic())

    def throttle(self) -> int:
        """A 421: halve the loops allowed to send (at least one) for a while; how many remain."""
        with self._lock:
            self._active = max(1, self._active // 2)
            self._throttled_until = time.monotonic() + THROTTLE_SECONDS
            return self._active

    def sent_in(self, seconds: float) -> None:
        """One mail took this long to hand over (its DATA and the reply)."""
        with self._lock:
            if self._send_seconds is None:
                self._send_seconds = seconds
            else:
                self._send_seconds += SEND_TIME_WEIGHT * (seconds - self._send_seconds)

    def claim_size(self, due: int, batch_size: int) -> int:
        """How many of the `due` mails one loop should claim now (0 when none are due).

        At most its fair share of what is due (or what it sends within FLUSH_SECONDS,
        if more) and about BATCH_SECONDS of sending; one mail until a send has been
        timed. A pool of one loop claims whole batches, as one worker always did.
        """
        if due <= 0:
            return 0
        if self.concurrency == 1:
            return min(batch_size, due)
        with self._lock:
            average = self._send_seconds
        by_time = fitting(BATCH_SECONDS, average, batch_size)
        # What one loop sends within FLUSH_SECONDS is not worth spreading over several
        # connections (and their claims and commits).
        fair = max(-(-due // self.active()), min(due, self.chunk_size()))
        return max(1, min(batch_size, fair, by_time))

    def chunk_size(self) -> int:
        """How many mails take about FLUSH_SECONDS to send: one commit marks them all
        in hand. One until a send has been timed."""
        with self._lock:
            average = self._send_seconds
        return fitting(FLUSH_SECONDS, average, MAX_CHUNK)

    def busy(self, delta: int) -> int:
        """Count a loop starting (+1) or ending (-1) a pass; how many are in a pass."""
        with self._lock:
            self._busy += delta
            return self._busy


_creating = threading.Lock()


@dataclass
class PoolState:
    """The app's delivery pool, as made in the process that last asked for it."""

    pool: DeliveryPool | None = None


def pool_of(app: Flask) -> DeliveryPool:
    """This process's pool for the app, made at first use (a forked child makes its own)."""
    state = state_of(app, PoolState)
    with _creating:
        if state.pool is None or state.pool.pid != os.getpid():
            state.pool = DeliveryPool(app.config["DELIVERY_CONCURRENCY"],
                                      app.config["DELIVERY_MAX_PER_MINUTE"])
        return state.pool
