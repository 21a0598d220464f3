"""The daily digest (CONTACT_DIGEST=daily): each recipient hears once a morning how the form
is doing, even when nothing arrived (a silent form is often a broken one).

At CONTACT_DIGEST_HOUR in CONTACT_TIMEZONE the first process to take the day's turn
(one atomic UPDATE of a `maintenance` row, as retention does) queues one digest per
recipient address through the outbox, so it is retried like any mail. A digest row
holds ids and counts, never a visitor's words: what it names is read when it is sent.
With virus scanning on, it also counts the recipient's files still waiting for their scan
(their mail waits with them while the scanner is away).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Flask, current_app
from sqlalchemy import func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..app_state import state_of
from ..config import time_zone
from ..delivery import outbox
from ..delivery.models import MailKind, OutboxMail, Status
from ..extensions import db
from ..forms import declaration_of
from ..submissions.models import (
    ANSWERED,
    ARCHIVED,
    NEW,
    PENDING,
    SPAM,
    Submission,
    SubmissionFile,
)
from .models import MaintenanceRun

log = logging.getLogger("contact_site.records")

DIGEST = "digest"  # its maintenance row
UNANSWERED_DAYS = 2  # a message neither answered nor archived after this is named
LISTED_MAX = 50  # lines per list: a digest is a summary, the console has the rest
CHECK_SECONDS = 300  # how often one process asks whether the morning's digest is due


def due_at(now: datetime) -> datetime:
    """This morning's digest time (naive UTC) for the clock `now` (naive UTC)."""
    zone = time_zone(current_app.config["CONTACT_TIMEZONE"])
    local = now.replace(tzinfo=UTC).astimezone(zone)
    morning = local.replace(hour=current_app.config["CONTACT_DIGEST_HOUR"], minute=0, second=0,
                            microsecond=0)
    if morning > local:  # before the hour: yesterday's is the latest due
        morning = (morning - timedelta(days=1)).replace(tzinfo=zone)
    return morning.astimezone(UTC).replace(tzinfo=None)


def take_turn(now: datetime) -> datetime | None:
    """For the one process that claims this morning's digest: when the last one was (or a
    day ago); None for every other process, and when it is not due."""
    due = due_at(now)
    last = db.session.scalar(select(MaintenanceRun.last_run).where(MaintenanceRun.name == DIGEST))
    db.session.commit()
    if last is not None and last >= due:
        return None
    if last is None:  # the first digest: the first insert wins
        try:
            db.session.execute(insert(MaintenanceRun).values(name=DIGEST, last_run=now))
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            return None
        return now - timedelta(days=1)
    claimed = db.session.execute(update(MaintenanceRun).where(
        MaintenanceRun.name == DIGEST, MaintenanceRun.last_run < due).values(last_run=now))
    db.session.commit()
    return last if claimed.rowcount == 1 else None  # type: ignore[attr-defined]


def recipient_addresses() -> list[str]:
    """Every address a form sends to, once each, in the order the forms file names them."""
    return list(dict.fromkeys(r.address.lower() for r in declaration_of().recipients()))


def _ids(query: Any) -> list[str]:
    return list(db.session.scalars(query.order_by(Submission.created_at).limit(LISTED_MAX)))


def contents(address: str, since: datetime, now: datetime) -> dict[str, Any]:
    """One recipient's digest as its outbox row keeps it: ids and counts, no visitor text.

    Failures are every mail and webhook of theirs still failed: named each morning until
    the owner sends it again or deletes the message. `scan_waiting` counts their files
    still waiting for a virus scan (0 while scanning is off)."""
    theirs = select(Submission.id).where(func.lower(Submission.recipient_address) == address,
                                         Submission.verdict != SPAM)
    failed = db.session.execute(
        select(OutboxMail.id, OutboxMail.kind, OutboxMail.submission_id, OutboxMail.last_error)
        .join(Submission, Submission.id == OutboxMail.submission_id)
        .where(func.lower(Submission.recipient_address) == address,
               OutboxMail.status == Status.FAILED)
        .order_by(OutboxMail.id).limit(LISTED_MAX)).all()
    scan_waiting = db.session.scalar(
        select(func.count()).select_from(SubmissionFile)
        .join(Submission, Submission.id == SubmissionFile.submission_id)
        .where(func.lower(Submission.recipient_address) == address,
               Submission.verdict != SPAM, SubmissionFile.scan_state == PENDING)) or 0
    return {
        "since": since.isoformat(timespec="seconds"),
        "arrived": _ids(theirs.where(Submission.created_at >= since)),
        "new": _ids(theirs.where(Submission.state == NEW)),
        "unanswered": _ids(theirs.where(
            Submission.state.not_in((ANSWERED, ARCHIVED)),
            Submission.created_at < now - timedelta(days=UNANSWERED_DAYS))),
        "unanswered_days": UNANSWERED_DAYS,
        "failed": [{"id": row_id, "kind": str(kind), "submission_id": submission_id,
                    "reason": (error or "")[:200]}
                   for row_id, kind, submission_id, error in failed],
        "scan_waiting": scan_waiting,
    }


def queue_digests(now: datetime, since: datetime) -> int:
    """Queue one digest per recipient address; how many."""
    addresses = recipient_addresses()
    for address in addresses:
        outbox.enqueue_mail(None, MailKind.DIGEST, address, payload=contents(address, since, now))
    db.session.commit()
    return len(addresses)


def send_if_due(now: datetime) -> int | None:
    """Queue this morning's digests if no process has; how many, or None when not due."""
    since = take_turn(now)
    if since is None:
        return None
    count = queue_digests(now, since)
    log.info("digest: %d queued", count)
    return count


@dataclass
class DigestState:
    """When this process next asks whether the morning's digest is due."""

    next_check: float = 0.0  # time.monotonic()


def run_daily(app: Flask, now: datetime) -> None:
    """The daily job the delivery loops call, when CONTACT_DIGEST is daily."""
    if app.config["CONTACT_DIGEST"] != "daily":
        return
    state = state_of(app, DigestState)
    if time.monotonic() < state.next_check:
        return
    state.next_check = time.monotonic() + CHECK_SECONDS
    with app.app_context():
        try:
            send_if_due(now)
        except Exception:  # the delivery loop goes on; the next check tries again
            db.session.rollback()
            log.exception("digest failed")
