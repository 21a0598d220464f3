"""The outbox: one row per outgoing mail, claimed, sent and retried by workers."""

from __future__ import annotations

import logging
import random
import smtplib
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from flask import current_app
from flask_mail import BadHeaderError
from sqlalchemy import ForeignKey, String, Text, and_, case, func, or_, select, update
from sqlalchemy.orm import Mapped, mapped_column, relationship

from . import mail as mails
from .db import db, utcnow

log = logging.getLogger("contact_site.delivery")

QUEUED, SENDING, SENT, FAILED = "queued", "sending", "sent", "failed"
STATUSES = (QUEUED, SENDING, SENT, FAILED)
THANK_YOU_GIVE_UP_HOURS = 24


class OutboxMail(db.Model):
    """One outgoing mail and where it stands."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[str] = mapped_column(ForeignKey("submission.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # "recipient" or "thank_you"
    to_address: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None]

    submission = relationship("Submission", lazy="joined")


def give_up_at(kind: str, now: datetime) -> datetime:
    """When a mail of this kind queued `now` is declared failed: thank-you mails sooner."""
    hours = current_app.config["DELIVERY_GIVE_UP_HOURS"]
    if kind == "thank_you":
        hours = min(hours, THANK_YOU_GIVE_UP_HOURS)
    return now + timedelta(hours=hours)


def enqueue(submission: Any) -> list[OutboxMail]:
    """Add the mails of a new submission to the session (the caller commits)."""
    now = utcnow()
    wanted = [("recipient", submission.recipient_address)]
    if submission.thank_you_sent:
        wanted.append(("thank_you", submission.email))
    rows = [
        OutboxMail(
            submission=submission, kind=kind, to_address=address,
            message_id=mails.new_message_id(), status=QUEUED, attempts=0, created_at=now,
            next_attempt_at=now, expires_at=give_up_at(kind, now),
        )
        for kind, address in wanted
    ]
    db.session.add_all(rows)
    return rows


def _due(now: datetime) -> Any:
    """Rows a worker may take: queued and due, or held by a claim that ran out."""
    return or_(
        and_(OutboxMail.status == QUEUED, OutboxMail.next_attempt_at <= now),
        and_(OutboxMail.status == SENDING, OutboxMail.claimed_until < now),
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
            status=SENDING, claim_token=token,
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
    return delay * random.uniform(0.75, 1.0)


def _finish(row: OutboxMail, **values: Any) -> None:
    """Record an outcome, only while this worker still holds the claim."""
    values.setdefault("claim_token", None)
    values.setdefault("claimed_until", None)
    db.session.execute(
        update(OutboxMail).where(OutboxMail.id == row.id, OutboxMail.claim_token == row.claim_token)
        .values(**values).execution_options(synchronize_session=False)
    )
    db.session.commit()


def record_sent(row: OutboxMail) -> None:
    """The server answered 250 to the data."""
    _finish(row, status=SENT, sent_at=utcnow(), attempts=row.attempts + 1, last_error=None)


def record_failed(row: OutboxMail, error: str) -> None:
    """A permanent failure: the mail will not be tried again unless an operator asks."""
    _finish(row, status=FAILED, attempts=row.attempts + 1, last_error=error)


def record_transient(row: OutboxMail, error: str) -> str:
    """A transient failure: try again later, or give up once the mail has expired."""
    attempts = row.attempts + 1
    next_at = utcnow() + timedelta(seconds=retry_delay(attempts))
    if next_at > row.expires_at:
        _finish(row, status=FAILED, attempts=attempts, last_error=f"expired: {error}")
        return "expired"
    _finish(row, status=QUEUED, attempts=attempts, next_attempt_at=next_at, last_error=error)
    return "transient"


def release(row: OutboxMail) -> None:
    """Give a claimed mail back to the queue without counting an attempt."""
    _finish(row, status=QUEUED)


def _keep_lease(rows: list[OutboxMail]) -> bool:
    """Extend the claim on mails not yet sent once half of it is used; False if it lapsed."""
    now, lease = utcnow(), timedelta(seconds=current_app.config["DELIVERY_CLAIM_SECONDS"])
    if rows[0].claimed_until - now > lease / 2:
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
    return result.rowcount == len(rows)


def _text(reply: bytes | str) -> str:
    return reply.decode(errors="replace") if isinstance(reply, bytes) else reply


def describe(error: BaseException) -> str:
    """The error as one line: the server's reply when there is one."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        code, reply = next(iter(error.recipients.values()))
        return f"{code} {_text(reply)}"
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {_text(error.smtp_error)}"
    return f"{type(error).__name__}: {error}"


def is_permanent(error: BaseException) -> bool:
    """5xx replies are permanent (RFC 5321); everything else may pass."""
    if isinstance(error, BadHeaderError):
        return True
    if isinstance(error, smtplib.SMTPAuthenticationError):
        return False  # the operator's credentials, not the mail: retry once fixed
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return all(code >= 500 for code, _ in error.recipients.values())
    if isinstance(error, smtplib.SMTPResponseException):
        return 500 <= error.smtp_code < 600
    return False


def deliver_due(should_stop: Callable[[], bool] | None = None) -> int:
    """Claim due mails and send them; the number claimed."""
    rows = claim_due_mails()
    if rows:
        deliver_batch(rows, should_stop)
    return len(rows)


def deliver_batch(rows: list[OutboxMail], should_stop: Callable[[], bool] | None = None) -> None:
    """Send claimed mails over one SMTP connection, reconnecting when it breaks."""
    connection = None
    try:
        for index, row in enumerate(rows):
            rest = rows[index:]
            if (should_stop is not None and should_stop()) or not _keep_lease(rest):
                for other in rest:  # returned to the queue, or left to the new holder
                    release(other)
                return
            if connection is None:
                connection, error = _open()
                if connection is None:
                    for other in rest:
                        _conclude(other, QUEUED, describe(error), time.monotonic())
                    return
            if not _send_one(connection, row):
                _discard(connection)
                connection = None
    finally:
        if connection is not None:
            _close(connection)


def _open() -> tuple[Any, BaseException | None]:
    """An open connection, or None and the error that prevented it."""
    connection = mails.connect()
    try:
        connection.host = connection.configure_host()
    except (OSError, smtplib.SMTPException) as error:
        return None, error
    return connection, None


def _usable(connection: Any) -> bool:
    """Whether the connection survived the last command (smtplib closes it on 421 or EOF)."""
    return connection.host is not None and connection.host.sock is not None


def _close(connection: Any) -> None:
    """QUIT, ignoring a server that has already gone: its accepted mails are recorded."""
    try:
        connection.host.quit()
    except (OSError, smtplib.SMTPException):
        _discard(connection)


def _discard(connection: Any) -> None:
    """Drop a broken connection without a QUIT that could only wait for a timeout."""
    if connection.host is not None:
        connection.host.close()


def _send_one(connection: Any, row: OutboxMail) -> bool:
    """Send one mail and record the outcome; False when the connection is unusable."""
    started = time.monotonic()
    try:
        message = mails.compose(row)
    except Exception as error:  # a poison row, e.g. its attachment gone from disk
        _conclude(row, FAILED, f"cannot compose: {describe(error)}", started)
        return True
    try:
        connection.send(message)
    except Exception as error:  # the delivery boundary: every failure is recorded
        if message.dispatched:  # 250 received; the break came after it
            _conclude(row, SENT, None, started, f" (then {describe(error)})")
            return False
        _conclude(row, FAILED if is_permanent(error) else QUEUED, describe(error), started)
        return _usable(connection)
    _conclude(row, SENT, None, started)
    return True


def _conclude(row: OutboxMail, status: str, error: str | None, started: float,
              note: str = "") -> None:
    """Record one attempt and log it on one line: id, attempt, outcome, reply, time."""
    if status == SENT:
        record_sent(row)
        outcome = "sent"
    elif status == FAILED:
        record_failed(row, error or "")
        outcome = "failed"
    else:
        outcome = record_transient(row, error or "")
    level = logging.INFO if status == SENT else logging.WARNING
    log.log(level, "mail %s attempt %d %s reply=%r in %.2fs%s", row.id, row.attempts + 1,
            outcome, error or "250", time.monotonic() - started, note)


def status_counts() -> dict[str, int]:
    """The number of mails in each status."""
    found = dict(db.session.execute(
        select(OutboxMail.status, func.count()).group_by(OutboxMail.status)).all())
    return {status: found.get(status, 0) for status in STATUSES}


def requeue(ids: list[int] | None = None) -> int:
    """Put failed mails (all, or these ids) back in the queue now; how many."""
    query = update(OutboxMail).where(OutboxMail.status == FAILED)
    if ids:
        query = query.where(OutboxMail.id.in_(ids))
    now = utcnow()
    give_up = case((OutboxMail.kind == "thank_you", give_up_at("thank_you", now)),
                   else_=give_up_at("recipient", now))
    result = db.session.execute(query.values(
        status=QUEUED, next_attempt_at=now, claim_token=None, claimed_until=None,
        expires_at=give_up,
    ).execution_options(synchronize_session=False))
    db.session.commit()
    return result.rowcount
