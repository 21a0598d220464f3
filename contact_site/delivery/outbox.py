"""The outbox's state machine: enqueue, claim with a lease, record each attempt, requeue.

These are the statements; when a batch runs them, and so when a mail is marked in
hand (`send_started_at`), checked and cleared, is told in lease.py.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import make_msgid, parseaddr
from typing import Any

from flask import current_app
from sqlalchemy import and_, bindparam, case, func, insert, or_, select, text, update
from sqlalchemy.sql.elements import ColumnElement

from ..database import utcnow
from ..escaping import without_addresses
from ..extensions import db
from ..forms import declaration_of
from ..submissions.models import HAM, SPAM, SUSPECT, Submission
from ..submissions.thread import Reply
from ..webhooks.payload import DELIVERY_FAILED, SUBMISSION_CREATED
from ..webhooks.signing import new_webhook_id
from ..write_queue import writing
from .models import DeliveryAttempt, MailKind, OutboxMail, Outcome, Status
from .timing import RETRY_JITTER, THANK_YOU_GIVE_UP_HOURS

# A mail whose claim lapsed this many times while it was being sent (it crashes
# or hangs its worker) is failed instead of being tried again.
MAX_TAKEOVERS = 3
EXPIRED_AT_CLAIM = "not sent before its give-up time"

log = logging.getLogger("contact_site.delivery")
# The rows the SMTP loops deliver; webhooks have a sender of their own (webhook_delivery.py).
MAILS = OutboxMail.kind != MailKind.WEBHOOK
WEBHOOKS = OutboxMail.kind == MailKind.WEBHOOK
NOTICE_REASON_MAX = 500


def give_up_at(kind: str, now: datetime) -> datetime:
    """When a mail of this kind queued `now` is declared failed: thank-you mails and digests
    sooner (the next day's digest says all a late one would)."""
    hours = current_app.config["DELIVERY_GIVE_UP_HOURS"]
    if kind == MailKind.WEBHOOK:
        hours = current_app.config["WEBHOOK_GIVE_UP_HOURS"]
    if kind in (MailKind.THANK_YOU, MailKind.DIGEST):
        hours = min(hours, THANK_YOU_GIVE_UP_HOURS)
    return now + timedelta(hours=hours)


def new_message_id() -> str:
    """A Message-ID in the sender's domain, fixed when a mail is queued."""
    domain = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])[1].rpartition("@")[2]
    return make_msgid(domain=domain or "localhost")


def enqueue_submission(submission: Submission) -> list[OutboxMail]:
    """Add the mails its verdict earns a new submission to the session (the caller commits).

    Ham: the owner's mail and (within the daily cap) the thank-you; suspect: the
    owner's mail alone, so the form cannot mail strangers; spam: none (docs/spam-verdicts.md).
    """
    if submission.verdict == SPAM:
        return []
    wanted = [(MailKind.OWNER, submission.recipient_address)]
    # An unflushed row has no verdict yet: its column default is ham.
    if submission.thank_you_promised and (submission.verdict or HAM) == HAM:
        wanted.append((MailKind.THANK_YOU, submission.email))
    mails = [enqueue_mail(submission, kind, address) for kind, address in wanted]
    return mails + enqueue_webhooks(submission)


def enqueue_webhooks(submission: Submission) -> list[OutboxMail]:
    """Add a delivery for each of the form's webhooks that wants this submission: ham, or
    suspect where `include_suspect` says so (spam never; the caller commits)."""
    form = declaration_of().form(submission.form_slug or "")
    verdict = submission.verdict or HAM
    if form is None or verdict == SPAM:
        return []
    return [enqueue_webhook(submission.id, hook.url, SUBMISSION_CREATED)
            for hook in form.webhooks
            if SUBMISSION_CREATED in hook.events
            and (verdict == HAM or (verdict == SUSPECT and hook.include_suspect))]


def enqueue_webhook(submission_id: str, url: str, event: str,
                    payload: dict[str, Any] | None = None) -> OutboxMail:
    """Add one webhook delivery, due now, with a new webhook-id (the caller commits)."""
    now = utcnow()
    row = OutboxMail(
        submission_id=submission_id, kind=MailKind.WEBHOOK, to_address="",
        message_id=new_webhook_id(), status=Status.QUEUED, attempts=0, created_at=now,
        next_attempt_at=now, expires_at=give_up_at(MailKind.WEBHOOK, now), target=url,
        event=event, payload=payload)
    db.session.add(row)
    return row


def notify_failure(row: OutboxMail, reason: str) -> None:
    """A mail or webhook failed for good: tell the form's `delivery.failed` webhooks (never
    about a delivery.failed notice itself, which would loop; the caller commits)."""
    if row.kind == MailKind.WEBHOOK and row.event == DELIVERY_FAILED or row.submission_id is None:
        return  # a digest is of no form: the next day's digest names it
    submission = db.session.get(Submission, row.submission_id)
    form = declaration_of().form(submission.form_slug) if submission is not None else None
    if submission is None or form is None:
        return
    data = {"kind": str(row.kind), "reason": reason[:NOTICE_REASON_MAX],
            "at": utcnow().isoformat(timespec="seconds") + "Z"}
    for hook in form.webhooks:
        if DELIVERY_FAILED in hook.events:
            enqueue_webhook(submission.id, hook.url, DELIVERY_FAILED, data)


def enqueue_mail(submission: Submission | None, kind: MailKind, address: str,
                 **extra: Any) -> OutboxMail:
    """Add one mail, due now, with a new Message-ID (the caller commits): a submission's, or
    a digest (no submission, its `payload` in `extra`)."""
    now = utcnow()
    row = OutboxMail(
        submission=submission, kind=kind, to_address=address, message_id=new_message_id(),
        status=Status.QUEUED, attempts=0, created_at=now, next_attempt_at=now,
        expires_at=give_up_at(kind, now), **extra,
    )
    db.session.add(row)
    return row


def enqueue_reply(submission: Submission, reply: Reply) -> OutboxMail:
    """Add the owner's reply to the visitor, due now (the caller commits)."""
    return enqueue_mail(submission, MailKind.REPLY, submission.email, reply=reply)


def database_now() -> datetime:
    """The database server's clock, naive UTC: claims never depend on a worker's clock."""
    if db.session.get_bind().dialect.name == "postgresql":
        # clock_timestamp(): now() would be the start of a transaction left open.
        query = text("SELECT clock_timestamp() AT TIME ZONE 'UTC'")
        return db.session.execute(query).scalar_one()  # type: ignore[no-any-return]
    # SQLite has no server: its 'now' is the clock of the process asking, read here
    # without a query (several per mail otherwise).
    return datetime.fromtimestamp(time.time(), UTC).replace(tzinfo=None)


def _due(now: datetime) -> ColumnElement[bool]:
    """Rows a worker may take: queued and due, or held by a claim that ran out."""
    return or_(
        and_(OutboxMail.status == Status.QUEUED, OutboxMail.next_attempt_at <= now),
        and_(OutboxMail.status == Status.SENDING, OutboxMail.claimed_until < now),
    )


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=current_app.config["DELIVERY_CLAIM_SECONDS"])


def claim_due_mails(limit: int | None = None, in_hand: bool = False,
                    which: ColumnElement[bool] = MAILS) -> list[OutboxMail]:
    """Atomically take up to `limit` due mails for this worker, with a lease; `in_hand`
    marks them all in hand at once (a claim small enough to send straight away).

    A lapsed claim on a mail that was being sent is a takeover: it counts as an
    attempt and is written to the mail's history. A mail taken over
    MAX_TAKEOVERS times, or past its give-up time, is failed here, never sent.
    """
    now = database_now()
    # Two tokens tell, from the one UPDATE that sees the old values, which rows
    # were lost mid-send (taken over) and which were queued or only waiting.
    token, takeover_token = uuid.uuid4().hex, uuid.uuid4().hex
    # The candidates are picked once: PostgreSQL needs the CTE MATERIALIZED, or it
    # may re-run an `IN (SELECT … LIMIT n)` per row and claim more than n (SQLite
    # runs it once, and the whole statement under its single writer lock; its
    # MATERIALIZED keyword would need SQLite 3.35). SKIP LOCKED keeps PostgreSQL
    # workers from queueing behind each other's rows. The outer WHERE re-checks
    # due-ness against rows another worker took meanwhile.
    picked = (
        select(OutboxMail.id).where(_due(now), which)
        .order_by(OutboxMail.next_attempt_at, OutboxMail.id)
        .limit(limit or current_app.config["DELIVERY_BATCH_SIZE"])
        .with_for_update(skip_locked=True)
        .cte("picked").prefix_with("MATERIALIZED", dialect="postgresql")
    )
    lost = and_(OutboxMail.status == Status.SENDING, OutboxMail.send_started_at.is_not(None))
    with writing():
        rows = _claim(picked, lost, (token, takeover_token), now, now if in_hand else None)
    return [row for row in rows if _still_deliverable(row, now)]


def _claim(picked: Any, lost: ColumnElement[bool], tokens: tuple[str, str], now: datetime,
           started: datetime | None) -> list[OutboxMail]:
    """The claim's UPDATE, its takeovers' history and its commit; the rows, detached."""
    token, takeover_token = tokens
    one_if_lost = case((lost, 1), else_=0)
    db.session.execute(
        update(OutboxMail).where(OutboxMail.id.in_(select(picked.c.id)), _due(now)).values(
            status=Status.SENDING, claim_token=case((lost, takeover_token), else_=token),
            claimed_until=_lease(now), send_started_at=started,
            attempts=OutboxMail.attempts + one_if_lost,
            takeovers=OutboxMail.takeovers + one_if_lost,
        ).execution_options(synchronize_session=False)
    )
    rows = list(db.session.scalars(
        select(OutboxMail).where(OutboxMail.claim_token.in_([token, takeover_token]))
        .order_by(OutboxMail.id)
    ))
    for row in rows:  # in the claim's own transaction: the count and the history agree
        if row.claim_token == takeover_token:
            db.session.execute(insert(DeliveryAttempt).values(
                mail_id=row.id, attempted_at=now, outcome=Outcome.TAKEOVER,
                reply=f"claim lapsed while sending: worker lost "
                      f"({row.takeovers} of {MAX_TAKEOVERS})"))
    # Detached snapshots, before the commit could expire them: the commits that
    # record each outcome would otherwise reload every row (and its submission).
    for row in rows:
        db.session.expunge(row)
        for loaded in (row.submission, row.reply):  # not cascaded: each would be reloaded
            if loaded is not None and loaded in db.session:
                db.session.expunge(loaded)
    db.session.commit()
    return rows


def _still_deliverable(row: OutboxMail, now: datetime) -> bool:
    """Fail a just-claimed mail that is past its give-up time or lost too often."""
    if row.expires_at <= now:
        _finish(row, Outcome.EXPIRED, EXPIRED_AT_CLAIM, 0.0, notice=EXPIRED_AT_CLAIM,
                status=Status.FAILED, last_error=f"expired: {row.last_error or EXPIRED_AT_CLAIM}")
        log.warning("mail %s expired before it could be sent: failed", row.id)
        return False
    if row.takeovers >= MAX_TAKEOVERS:
        lost = f"worker lost {row.takeovers} times"
        _finish(row, None, None, 0.0, notice=lost, status=Status.FAILED, last_error=lost)
        log.error("mail %s failed: worker lost %d times while sending it", row.id,
                  row.takeovers)
        return False
    return True


def retry_delay(attempts: int) -> float:
    """Exponential backoff from the base, doubling, capped, less a random RETRY_JITTER."""
    config = current_app.config
    delay = min(config["DELIVERY_RETRY_MAX_SECONDS"],
                config["DELIVERY_RETRY_BASE_SECONDS"] * 2 ** max(attempts - 1, 0))
    return float(delay * random.uniform(1.0 - RETRY_JITTER, 1.0))


def _write(row: OutboxMail, outcome: Outcome | None, reply: str | None, seconds: float,
           attempted_at: datetime, **values: Any) -> bool:
    """Write an outcome and its attempt (no commit), only while this worker holds the claim."""
    values.setdefault("claim_token", None)
    values.setdefault("claimed_until", None)
    values.setdefault("send_started_at", None)
    result = db.session.execute(
        update(OutboxMail).where(OutboxMail.id == row.id, OutboxMail.claim_token == row.claim_token)
        .values(**values).execution_options(synchronize_session=False)
    )
    held = bool(result.rowcount)  # type: ignore[attr-defined]
    if outcome is not None and held:
        db.session.execute(insert(DeliveryAttempt).values(
            mail_id=row.id, attempted_at=attempted_at, outcome=outcome, reply=reply,
            seconds=round(seconds, 3)))
    return held


def _finish(row: OutboxMail, outcome: Outcome | None, reply: str | None, seconds: float,
            notice: str | None = None, **values: Any) -> None:
    """Record an outcome and its attempt in one commit, only while this worker holds the claim;
    `notice`: it failed for good, and the form's delivery.failed webhooks hear why."""
    with writing():
        if _write(row, outcome, reply, seconds, utcnow(), **values) and notice is not None:
            notify_failure(row, notice)
        db.session.commit()


@dataclass(frozen=True)
class Attempt:
    """One finished attempt at a claimed mail, waiting to be written by `settle`."""

    row: OutboxMail
    status: Status  # SENT, FAILED, or QUEUED for a transient failure
    reply: str  # the server's reply, or the error
    seconds: float
    note: str = ""  # after a 250: what broke the connection afterwards
    retry_after: float | None = None  # a webhook's Retry-After: no retry sooner


def _write_sent(sent: Sequence[Attempt], now: datetime) -> None:
    """Mark these mails sent and log their attempts: two statements however many (no commit)."""
    if not sent:
        return
    held = set(db.session.scalars(
        update(OutboxMail).where(_held_by([attempt.row for attempt in sent])).values(
            status=Status.SENT, sent_at=now, attempts=OutboxMail.attempts + 1, last_error=None,
            claim_token=None, claimed_until=None, send_started_at=None,
        ).returning(OutboxMail.id).execution_options(synchronize_session=False)))
    rows = [{"mail_id": attempt.row.id, "attempted_at": now, "outcome": Outcome.SENT,
             "reply": f"{attempt.reply}{attempt.note}", "seconds": round(attempt.seconds, 3)}
            for attempt in sent if attempt.row.id in held]
    if rows:
        db.session.execute(insert(DeliveryAttempt), rows)


def _write_attempt(attempt: Attempt, now: datetime) -> Outcome:
    """Write one failed attempt with the values its status calls for (no commit)."""
    row, reply, seconds = attempt.row, attempt.reply, attempt.seconds
    attempts = row.attempts + 1
    if attempt.status == Status.FAILED:
        if _write(row, Outcome.FAILED, reply, seconds, now, status=Status.FAILED,
                  attempts=attempts, last_error=reply):
            notify_failure(row, reply)
        return Outcome.FAILED
    next_at = now + timedelta(seconds=max(retry_delay(attempts), attempt.retry_after or 0.0))
    if next_at > row.expires_at:
        if _write(row, Outcome.EXPIRED, reply, seconds, now, status=Status.FAILED,
                  attempts=attempts, last_error=f"expired: {reply}"):
            notify_failure(row, f"expired: {reply}")
        return Outcome.EXPIRED
    _write(row, Outcome.TRANSIENT, reply, seconds, now, status=Status.QUEUED, attempts=attempts,
           next_attempt_at=next_at, last_error=reply)
    return Outcome.TRANSIENT


def settle(attempts: Sequence[Attempt], renew: Sequence[OutboxMail] = (),
           starting: Sequence[OutboxMail] = ()) -> set[int]:
    """Write finished attempts, renew the claims on `renew` and mark `starting` in hand, in
    one commit; the ids of `renew` still held.

    One commit (one fsync) for many mails: a "sent" mark lost with its worker only
    means the mail is sent again, which at-least-once delivery allows. Each written
    attempt is logged on one line: id, attempt, outcome, reply, time, no address.
    """
    if not attempts and not renew:
        return set()
    now = database_now()
    sent = [attempt for attempt in attempts if attempt.status == Status.SENT]
    with writing():
        _write_sent(sent, now)
        outcomes = [Outcome.SENT if attempt.status == Status.SENT
                    else _write_attempt(attempt, now) for attempt in attempts]
        held = _renew(renew, starting, now) if renew else set()
        db.session.commit()
    for attempt, outcome in zip(attempts, outcomes, strict=True):
        level = logging.INFO if outcome == Outcome.SENT else logging.WARNING
        # The reply is kept whole in the attempt log; the log line names no address.
        log.log(level, "mail %s attempt %d %s reply=%r in %.2fs%s", attempt.row.id,
                attempt.row.attempts + 1, outcome, without_addresses(attempt.reply),
                attempt.seconds, without_addresses(attempt.note))
    return held


def release(row: OutboxMail) -> None:
    """Give a claimed mail back to the queue without counting an attempt."""
    _finish(row, None, None, 0.0, status=Status.QUEUED)


def _held_by(rows: Sequence[OutboxMail]) -> ColumnElement[bool]:
    """These rows, as long as this worker's claim (its tokens) still holds them."""
    return and_(OutboxMail.id.in_([row.id for row in rows]),
                OutboxMail.claim_token.in_({row.claim_token for row in rows}),
                OutboxMail.status == Status.SENDING)


def unmark(rows: Sequence[OutboxMail]) -> None:
    """Clear the "in hand" mark of these waiting mails, still held, in one commit."""
    if not rows:
        return
    with writing():
        db.session.execute(update(OutboxMail).where(_held_by(rows)).values(send_started_at=None)
                           .execution_options(synchronize_session=False))
        db.session.commit()


def release_all(rows: list[OutboxMail]) -> int:
    """Give back, in one commit, every one of these claims still held; how many."""
    if not rows:
        return 0
    result = db.session.execute(update(OutboxMail).where(_held_by(rows)).values(
        status=Status.QUEUED, claim_token=None, claimed_until=None, send_started_at=None,
    ).execution_options(synchronize_session=False))
    db.session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def _renew(rows: Sequence[OutboxMail], starting: Sequence[OutboxMail],
           now: datetime) -> set[int]:
    """Renew the claims still held and mark `starting` in hand (no commit); their ids."""
    # The token, not the time, proves the claim: a takeover changes it, so renewing a
    # claim that lapsed unnoticed is safe as long as nobody took it.
    values: dict[str, Any] = {"claimed_until": _lease(now)}
    if starting:
        values["send_started_at"] = case(
            (OutboxMail.id.in_([row.id for row in starting]), now),
            else_=OutboxMail.send_started_at)
    held = set(db.session.scalars(update(OutboxMail).where(_held_by(rows)).values(**values)
                                  .returning(OutboxMail.id)
                                  .execution_options(synchronize_session=False)))
    for row in rows:
        row.claimed_until = values["claimed_until"]
    return held


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
    give_up = case((OutboxMail.kind.in_((MailKind.THANK_YOU, MailKind.DIGEST)),
                    give_up_at(MailKind.THANK_YOU, now)),
                   (OutboxMail.kind == MailKind.WEBHOOK, give_up_at(MailKind.WEBHOOK, now)),
                   else_=give_up_at(MailKind.OWNER, now))
    result = db.session.execute(query.values(
        status=Status.QUEUED, next_attempt_at=now, claim_token=None, claimed_until=None,
        expires_at=give_up, takeovers=0, send_started_at=None,
    ).execution_options(synchronize_session=False))
    db.session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def hold_queue(rows: list[OutboxMail], error: str, until: datetime) -> int:
    """Give claimed mails back and try no queued mail before `until`; that wait is not
    counted towards any give-up time. Returns how many queued mails are held."""
    for row in rows:  # in each mail's history, but not counted as an attempt
        _finish(row, Outcome.CONFIG_ERROR, error, 0.0, status=Status.QUEUED,
                last_error=f"configuration error: {error}")
    pause, table = until - utcnow(), OutboxMail.__table__
    # Shifted row by row in Python: date arithmetic in SQL differs between SQLite and
    # PostgreSQL. Only an error path, at most once per hold, runs this.
    waiting = db.session.execute(select(OutboxMail.id, OutboxMail.expires_at,
                                        OutboxMail.next_attempt_at)
                                 .where(OutboxMail.status == Status.QUEUED, MAILS)).all()
    if waiting:
        db.session.execute(
            update(table).where(table.c.id == bindparam("mail_id"),
                                table.c.status == Status.QUEUED)
            .values(expires_at=bindparam("expires"), next_attempt_at=bindparam("next_at")),
            [{"mail_id": id_, "expires": expires + pause, "next_at": max(next_at, until)}
             for id_, expires, next_at in waiting])
    db.session.commit()
    return len(waiting)


def release_held(until: datetime) -> int:
    """Make the mails held until `until` by a configuration error due now; how many."""
    result = db.session.execute(
        update(OutboxMail).where(OutboxMail.status == Status.QUEUED, MAILS,
                                 OutboxMail.next_attempt_at <= until)
        .values(next_attempt_at=utcnow()).execution_options(synchronize_session=False))
    db.session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def due_count(limit: int, which: ColumnElement[bool] = MAILS) -> int:
    """How many mails (or webhook deliveries) a worker could claim now, counted up to
    `limit` (a read: no lock taken)."""
    now = database_now()
    due = select(OutboxMail.id).where(_due(now), which).limit(limit).subquery()
    return int(db.session.scalar(select(func.count()).select_from(due)) or 0)


def seconds_until_due(which: ColumnElement[bool] = MAILS) -> float | None:
    """Seconds until the next queued mail (or webhook delivery) is due or the next claim
    lapses; None if neither."""
    now = database_now()
    next_retry = db.session.scalar(select(func.min(OutboxMail.next_attempt_at))
                                   .where(OutboxMail.status == Status.QUEUED, which))
    next_lapse = db.session.scalar(select(func.min(OutboxMail.claimed_until))
                                   .where(OutboxMail.status == Status.SENDING, which))
    db.session.commit()  # end the read: an idle loop must not pin an old snapshot
    times = [moment for moment in (next_retry, next_lapse) if moment is not None]
    return max(0.0, (min(times) - now).total_seconds()) if times else None
