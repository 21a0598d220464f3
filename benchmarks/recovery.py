"""Helpers for two measures of `make bench`: recovery after an SMTP outage, and start-up.

Recovery: the product's outbox is read straight from its SQLite file (read-only) to
tell when every mail has been refused once and, at the moment the sink accepts
again, when the last refused mail is due for its retry. Start-up: polling GET /
until a freshly spawned gunicorn answers 200.
"""

from __future__ import annotations

import http.client
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# (status, attempts, next attempt as seconds since the epoch) of each mail, by id.
Outbox = dict[int, tuple[str, int, float]]
POLL_SECONDS = 0.015  # between two GET / while waiting for a first answer


def epoch(stamp: str) -> float:
    """A stored timestamp as seconds since the epoch: the schema keeps naive UTC text,
    '2026-12-02 01:22:03.123456'."""
    return datetime.fromisoformat(stamp).replace(tzinfo=UTC).timestamp()


def read_outbox(database: Path) -> Outbox:
    """Every mail's status, attempts and next attempt, read without taking a write lock."""
    with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=10)) as conn:
        found = conn.execute("SELECT id, status, attempts, next_attempt_at FROM outbox").fetchall()
    return {mail: (status, attempts, epoch(due)) for mail, status, attempts, due in found}


def all_tried(outbox: Outbox) -> bool:
    """Whether every mail has had at least one attempt."""
    return all(attempts for _, attempts, _ in outbox.values())


def all_sent(outbox: Outbox) -> bool:
    """Whether every mail is recorded as sent."""
    return all(status == "sent" for status, _, _ in outbox.values())


def wait_for_outbox(database: Path, done: Callable[[Outbox], bool], at_least: float,
                    timeout: float) -> bool:
    """Wait `at_least` seconds and until `done(outbox)`; False if `timeout` came first."""
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < timeout:
        if elapsed >= at_least and done(read_outbox(database)):
            return True
        time.sleep(0.1)
    return False


def latest_retry(switched_at: float, at_switch: Outbox, after: Outbox) -> tuple[float, int]:
    """When the last mail refused during the outage is due again; and how many of the mails
    being sent at the switch had in fact been refused just before it.

    A mail 'queued' at the switch waits for the next_attempt_at read then. A mail
    'sending' (claimed) at the switch is either still waiting in its loop's batch, and
    its DATA comes after the switch and is accepted, or its DATA was answered 451 just
    before the switch and the retry was recorded after the read: only the read made
    once all have arrived tells which. The sink accepts everything after the switch,
    so a next_attempt_at later than the switch can only come from such a 451.
    """
    latest, refused_in_flight = switched_at, 0
    for mail, (status, _, due) in at_switch.items():
        if status == "queued":
            latest = max(latest, due)
        elif status == "sending" and mail in after and after[mail][2] > switched_at:
            latest = max(latest, after[mail][2])
            refused_in_flight += 1
    return latest, refused_in_flight


def recovery_figures(switched_at: float, at_switch: Outbox, after: Outbox,
                     stats: dict[str, Any], drain_rate: float | None) -> dict[str, Any]:
    """recovery_s (last arrival after the switch), prediction_s and their ratio.

    prediction_s = the wait for the last retry + the unsent mails at the product's
    own drain rate (None when the drain was not measured in this run).
    """
    latest, refused_in_flight = latest_retry(switched_at, at_switch, after)
    statuses = [status for status, _, _ in at_switch.values()]
    unsent = len(statuses) - statuses.count("sent")
    sent = [status for status, _, _ in after.values()].count("sent")
    found: dict[str, Any] = {
        "mails": len(at_switch), "sent": sent, "received": stats["count"],
        # Beyond the mails: sent twice (a group commit lost, or a takeover after the 250).
        "received_twice": max(0, stats["count"] - len(at_switch)),
        "sink_451s": stats["refused"],
        "outage_s": round(switched_at - stats["first_data"], 2) if stats["first_data"] else None,
        "queued_at_switch": statuses.count("queued"),
        "sending_at_switch": statuses.count("sending"),
        "refused_in_flight_at_switch": refused_in_flight,
        "last_retry_due_s": round(latest - switched_at, 2),
        "first_arrival_s": round(stats["first"] - switched_at, 2) if stats["first"] else None,
        "recovery_s": (round(stats["last"] - switched_at, 2)
                       if sent == len(at_switch) and stats["last"] else None),
        "drain_0s_mails_per_s": drain_rate, "prediction_s": None, "ratio": None,
    }
    if drain_rate and found["recovery_s"] is not None:
        prediction = (latest - switched_at) + unsent / drain_rate
        found["prediction_s"] = round(prediction, 2)
        found["ratio"] = round(found["recovery_s"] / prediction, 2)
    return found


def first_answer(port: int, timeout: float) -> float | None:
    """The monotonic time of the first 200 to GET / on 127.0.0.1:`port`; None after `timeout`.

    A connection made once gunicorn's master has bound the socket waits in its
    backlog until a worker accepts it: the answer comes as soon as one can give it.
    """
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=left)
        try:
            connection.request("GET", "/")
            response = connection.getresponse()
            response.read()
            if response.status == 200:
                return time.monotonic()
        except (OSError, http.client.HTTPException):
            pass  # not bound yet (refused), or the master restarted a worker
        finally:
            connection.close()
        time.sleep(POLL_SECONDS)
    return None
