"""The outbox's state machine: enqueue, claim with a lease, record each attempt, requeue."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from email.utils import make_msgid, parseaddr
from typing import Any

from flask import current_app
from sqlalchemy import and_, case, func, insert, or_, select, update
from sqlalchemy.sql.elements import ColumnElement

from ..database import utcnow
from ..extensions import db
from ..submissions.models import Submission
from .models import DeliveryAttempt, Kind, OutboxMail, Outcome, Status

THANK_YOU_GIVE_UP_HOURS = 24


def give_up_at(kind: str, now: datetime) -> datetime:
    """When a mail of this kind queued `now` is declared failed: thank-you mails sooner."""
    hours = current_app.config["DELIVERY_GIVE_UP_HOURS"]
    if kind == Kind.THANK_YOU:
        hours = min(hours, THANK_YOU_GIVE_UP_HOURS)
    return now + timedelta(hours=hours)


def new_message_id() -> str:
    """A Message-ID in the sender's domain, fixed when a mail is queued."""
    domain = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])[1].rpartition("@")[2]
    return make_msgid(domain=domain or "localhost")


def enqueue_submission(submission: Submission) -> list[OutboxMail]:
    """Add the mails of a new submission to the session (the caller commits)."""
    wanted = [(Kind.OWNER, submission.recipient_address)]
    if submission.thank_you_sent:
        wanted.append((Kind.THANK_YOU, submission.email))
    return [enqueue_mail(submission, kind, address) for kind, address in wanted]


def enqueue_mail(submission: Submission, kind: Kind, address: str) -> OutboxMail:
    """Add one mail for a submission, due now, with a new Message-ID (the caller commits)."""
    now = utcnow()
    row = OutboxMail(
        submission=submission, kind=kind, to_address=address, message_id=new_message_id(),
        status=Status.QUEUED, attempts=0, created_at=now, next_attempt_at=now,
        expires_at=give_up_at(kind, now),
    )
    db.session.add(row)
    return row


def _due(now: datetime) -> ColumnElement[bool]:
    """Rows a worker may take: queued and due, or held by a claim that ran out."""
    return or_(
        and_(OutboxMail.status == Status.QUEUED, OutboxMail.next_attempt_at <= now),
        and_(OutboxMail.status == Status.SENDING, OutboxMail.claimed_until < now),
    )


def claim_due_mails(limit: int | None = None) -> list[OutboxMail]:
    """Atomically take up to `limit` due mails for this worker, with a lease."""
    config = current_app.config
    now, token = utcnow(), uuid.uuid4().hex
    # The candidates are picked once: PostgreSQL needs the CTE MATERIALIZED, or it
    # may re-run an `IN (SELECT … LIMIT n)` per row and claim more than n (SQLite
    # runs it once, and the whole statement under its single writer lock; its
    # MATERIALIZED keyword would need SQLite 3.35). SKIP LOCKED keeps PostgreSQL
    # workers from queueing behind each other's rows. The outer WHERE re-checks
    # due-ness against rows another worker took meanwhile.
    picked = (
        select(OutboxMail.id).where(_due(now))
        .order_by(OutboxMail.next_attempt_at, OutboxMail.id)
        .limit(limit or config["DELIVERY_BATCH_SIZE"]).with_for_update(skip_locked=True)
        .cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
    )
    db.session.execute(
        update(OutboxMail).where(OutboxMail.id.in_(select(picked.c.id)), _due(now)).values(
            status=Status.SENDING, claim_token=token,
            claimed_until=now + timedelta(seconds=config["DELIVERY_CLAIM_SECONDS"]),
        ).execution_options(synchronize_session=False)
    )
    db.session.commit()
    rows = list(db.session.scalars(
        select(OutboxMail).where(OutboxMail.claim_token == token).order_by(OutboxMail.id)
    ))
    # Detached snapshots: the commits that record each outcome would otherwise
    # expire them and reload every row (and its submission) one by one.
    for row in rows:
        db.session.expunge(row)
    return rows


def retry_delay(attempts: int) -> float:
    """Exponential backoff from the base, doubling, capped, with jitter."""
    config = current_app.config
    delay = min(config["DELIVERY_RETRY_MAX_SECONDS"],
                config["DELIVERY_RETRY_BASE_SECONDS"] * 2 ** max(attempts - 1, 0))
    return float(delay * random.uniform(0.75, 1.0))


def _finish(row: OutboxMail, outcome: Outcome | None, reply: str | None, seconds: float,
            **values: Any) -> None:
    """Record an outcome and its attempt in one commit, only while this worker holds the claim."""
    values.setdefault("claim_token", None)
    values.setdefault("claimed_until", None)
    result = db.session.execute(
        update(OutboxMail).where(OutboxMail.id == row.id, OutboxMail.claim_token == row.claim_token)
        .values(**values).execution_options(synchronize_session=False)
    )
    if outcome is not None and result.rowcount:  # type: ignore[attr-defined]
        db.session.execute(insert(DeliveryAttempt).values(
            mail_id=row.id, attempted_at=utcnow(), outcome=outcome, reply=reply,
            seconds=round(seconds, 3)))
    db.session.commit()


def record_sent(row: OutboxMail, seconds: float = 0.0, note: str | None = None) -> None:
    """The server answered 250 to the data."""
    _finish(row, Outcome.SENT, note or "250", seconds, status=Status.SENT, sent_at=utcnow(),
            attempts=row.attempts + 1, last_error=None)


def record_failed(row: OutboxMail, error: str, seconds: float = 0.0) -> None:
    """A permanent failure: the mail will not be tried again unless an operator asks."""
    _finish(row, Outcome.FAILED, error, seconds, status=Status.FAILED,
            attempts=row.attempts + 1, last_error=error)


def record_transient(row: OutboxMail, error: str, seconds: float = 0.0) -> Outcome:
    """A transient failure: try again later, or give up once the mail has expired."""
    attempts = row.attempts + 1
    next_at = utcnow() + timedelta(seconds=retry_delay(attempts))
    if next_at > row.expires_at:
        _finish(row, Outcome.EXPIRED, error, seconds, status=Status.FAILED, attempts=attempts,
                last_error=f"expired: {error}")
        return Outcome.EXPIRED
    _finish(row, Outcome.TRANSIENT, error, seconds, status=Status.QUEUED, attempts=attempts,
            next_attempt_at=next_at, last_error=error)
    return Outcome.TRANSIENT


def release(row: OutboxMail) -> None:
    """Give a claimed mail back to the queue without counting an attempt."""
    _finish(row, None, None, 0.0, status=Status.QUEUED)


def keep_lease(rows: list[OutboxMail]) -> bool:
    """Extend the claim on mails not yet sent once half of it is used; False if it lapsed."""
    now, lease = utcnow(), timedelta(seconds=current_app.config["DELIVERY_CLAIM_SECONDS"])
    claimed_until = rows[0].claimed_until
    if claimed_until is not None and claimed_until - now > lease / 2:
        return True
    result = db.session.execute(
        update(OutboxMail).where(
            OutboxMail.id.in_([row.id for row in rows]),
            OutboxMail.claim_token == rows[0].claim_token, OutboxMail.claimed_until > now,
        ).values(claimed_until=now + lease).execution_options(synchronize_session=False)
    )
    db.session.commit()
    for row in rows:
        row.claimed_until = now + lease
    return bool(result.rowcount == len(rows))  # type: ignore[attr-defined]


def attempts_of(mail_id: int) -> list[DeliveryAttempt]:
    """Every attempt at one mail, oldest first."""
    return list(db.session.scalars(select(DeliveryAttempt).where(
        DeliveryAttempt.mail_id == mail_id).order_by(DeliveryAttempt.id)))


def status_counts() -> dict[str, int]:
    """The number of mails in each status."""
    found = dict(db.session.execute(
        select(OutboxMail.status, func.count()).group_by(OutboxMail.status)).tuples().all())
    return {status.value: found.get(status, 0) for status in Status}


def requeue(ids: list[int] | None = None) -> int:
    """Put failed mails (all, or these ids) back in the queue now; how many."""
    query = update(OutboxMail).where(OutboxMail.status == Status.FAILED)
    if ids:
        query = query.where(OutboxMail.id.in_(ids))
    now = utcnow()
    give_up = case((OutboxMail.kind == Kind.THANK_YOU, give_up_at(Kind.THANK_YOU, now)),
                   else_=give_up_at(Kind.OWNER, now))
    result = db.session.execute(query.values(
        status=Status.QUEUED, next_attempt_at=now, claim_token=None, claimed_until=None,
        expires_at=give_up,
    ).execution_options(synchronize_session=False))
    db.session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]
