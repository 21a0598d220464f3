"""Retention (docs/privacy.md): what is deleted when, applied once a day across all processes.

`purge(now)` does the work for a given clock (tests pass a moved one);
`purge_if_due(now)` runs it only when this process wins the day's turn, taken
by one atomic UPDATE of the `maintenance` row; `run_daily` is the job the
delivery loops call, asking the database at most every CHECK_SECONDS.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import and_, delete, exists, func, insert, not_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from ..app_state import state_of
from ..delivery.models import MailKind, OutboxMail, Status
from ..extensions import db
from ..ratelimit import RateLimitCounter
from ..submissions.models import SPAM, Submission, SubmissionFile
from ..submissions.thread import Reply
from .models import DAILY, MaintenanceRun
from .privacy import (
    BATCH,
    Removed,
    delete_submissions,
    mail_note,
    remove_upload_folder,
    secure_delete,
    upload_root,
)

log = logging.getLogger("contact_site.records")

DAY = timedelta(days=1)
CHECK_SECONDS = 600  # how often one process asks whether the day's purge is due
# An upload folder with no submission behind it is left this long: a request may be
# between writing the file and committing the submission.
ORPHAN_GRACE = DAY
# A digest names messages by id only; its row is kept this long for the outbox's history.
DIGEST_DAYS = 30
SUBMISSION_ID = re.compile(r"[0-9a-f]{32}")


@dataclass(frozen=True)
class Purge:
    """What one retention pass removed."""

    submissions: int = 0  # past CONTACT_RETENTION_DAYS, with their mails, history and files
    spam: int = 0  # past CONTACT_SPAM_RETENTION_DAYS
    uploads: int = 0  # files past CONTACT_UPLOAD_RETENTION_DAYS after their mail was sent
    orphans: int = 0  # upload folders no stored submission refers to
    rate_limit_counters: int = 0  # windows that have ended
    cancelled: int = 0  # mails of the purged submissions not yet sent: never will be
    in_flight: int = 0  # mails of theirs a worker had in hand: may be with the server
    digests: int = 0  # daily digests older than DIGEST_DAYS

    def summary(self) -> str:
        """One line of counts."""
        return (f"purged {self.submissions} old submission(s), {self.spam} spam, "
                f"{self.uploads} upload(s) past their retention, {self.orphans} orphaned "
                f"upload folder(s), {self.rate_limit_counters} expired rate-limit counter(s), "
                f"{self.digests} old digest(s); "
                f"their unsent mails: {mail_note(self.cancelled, self.in_flight)}")


def _delete_where(*conditions: ColumnElement[bool]) -> Removed:
    """Delete the submissions meeting the conditions, a batch per commit; what went."""
    total = Removed()
    while True:
        ids = list(db.session.scalars(select(Submission.id).where(*conditions).limit(BATCH)))
        if not ids:
            return total
        total += delete_submissions(ids)


def _holds_files() -> ColumnElement[bool]:
    """The submission still has a file on disk: the visitor's, or one sent with a reply."""
    return or_(exists().where(SubmissionFile.submission_id == Submission.id,
                              SubmissionFile.path.is_not(None)),
               exists().where(Reply.submission_id == Submission.id, Reply.file_path.is_not(None)))


def _uploads_done(cutoff: datetime) -> list[str]:
    """Submissions whose files went out in mails (the owner's, replies) sent before `cutoff`,
    none pending: a folder goes as a whole, after the last mail that carried any of it."""
    owner = and_(OutboxMail.submission_id == Submission.id,
                 OutboxMail.kind.in_((MailKind.OWNER, MailKind.REPLY)))
    last_sent = (select(func.max(OutboxMail.sent_at))
                 .where(owner, OutboxMail.status == Status.SENT).scalar_subquery())
    pending = exists().where(owner, OutboxMail.status.in_([Status.QUEUED, Status.SENDING]))
    return list(db.session.scalars(select(Submission.id).where(
        _holds_files(), last_sent < cutoff, not_(pending))))


def _expire_uploads(cutoff: datetime) -> int:
    """Delete every file past its retention; how many. Each file's row keeps its name,
    type and size, its path set to None."""
    ids = _uploads_done(cutoff)
    for start in range(0, len(ids), BATCH):
        db.session.execute(update(SubmissionFile)
                           .where(SubmissionFile.submission_id.in_(ids[start:start + BATCH]))
                           .values(path=None).execution_options(synchronize_session=False))
        db.session.execute(update(Reply)
                           .where(Reply.submission_id.in_(ids[start:start + BATCH]))
                           .values(file_path=None).execution_options(synchronize_session=False))
    db.session.commit()  # the record first: a file left by a crash is an orphan, swept below
    root = upload_root()
    # A submission's files are all in its own folder.
    return sum(remove_upload_folder(submission_id, root) for submission_id in ids)


def _sweep_orphans(now: datetime) -> int:
    """Delete upload folders, older than a day, of no submission holding a file there."""
    root = upload_root()
    if not root.is_dir():
        return 0
    oldest = (now - ORPHAN_GRACE).replace(tzinfo=UTC).timestamp()
    candidates = [path.name for path in root.iterdir() if path.is_dir()
                  and SUBMISSION_ID.fullmatch(path.name) and path.stat().st_mtime < oldest]
    swept = 0
    for start in range(0, len(candidates), BATCH):
        chunk = candidates[start:start + BATCH]
        held = set(db.session.scalars(select(Submission.id).where(
            Submission.id.in_(chunk), _holds_files())))
        for name in chunk:
            if name not in held:
                remove_upload_folder(name, root)
                swept += 1
    return swept


def _expire_digests(now: datetime) -> int:
    """Delete digests (with their attempts) sent, or failed, over DIGEST_DAYS ago."""
    result = db.session.execute(delete(OutboxMail).where(
        OutboxMail.kind == MailKind.DIGEST, OutboxMail.status.in_((Status.SENT, Status.FAILED)),
        OutboxMail.created_at < now - timedelta(days=DIGEST_DAYS)))
    db.session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def _expire_counters(now: datetime) -> int:
    """Delete rate-limit windows that ended (they hold client addresses)."""
    with secure_delete():
        result = db.session.execute(delete(RateLimitCounter).where(
            RateLimitCounter.expires_at < now.replace(tzinfo=UTC).timestamp()))
    db.session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


def purge(now: datetime) -> Purge:
    """Apply every retention setting as of `now` (naive UTC); what was removed."""
    config = current_app.config
    days, spam_days = config["CONTACT_RETENTION_DAYS"], config["CONTACT_SPAM_RETENTION_DAYS"]
    upload_days = config["CONTACT_UPLOAD_RETENTION_DAYS"]
    old = _delete_where(Submission.created_at < now - timedelta(days=days)) \
        if days else Removed()
    spam = _delete_where(Submission.verdict == SPAM, Submission.created_at
                         < now - timedelta(days=spam_days)) if spam_days else Removed()
    uploads = _expire_uploads(now - timedelta(days=upload_days)) if upload_days else 0
    result = Purge(old.submissions, spam.submissions, uploads, _sweep_orphans(now),
                   _expire_counters(now), old.cancelled + spam.cancelled,
                   old.in_flight + spam.in_flight, _expire_digests(now))
    log.info("retention: %s", result.summary())
    return result


def take_daily_turn(now: datetime) -> bool:
    """True for the one process that claims today's run (an atomic UPDATE of one row)."""
    last = db.session.scalar(select(MaintenanceRun.last_run).where(MaintenanceRun.name == DAILY))
    db.session.commit()  # no read transaction held while the day is not due
    if last is not None and last > now - DAY:
        return False
    if last is None:  # a database that lost its row: the first insert wins
        try:
            db.session.execute(insert(MaintenanceRun).values(name=DAILY, last_run=now))
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            return False
        return True
    claimed = db.session.execute(update(MaintenanceRun).where(
        MaintenanceRun.name == DAILY, MaintenanceRun.last_run <= now - DAY).values(last_run=now))
    db.session.commit()
    return bool(claimed.rowcount == 1)  # type: ignore[attr-defined]


def purge_if_due(now: datetime) -> Purge | None:
    """Purge if no process of the deployment has in the last day; None when not due."""
    return purge(now) if take_daily_turn(now) else None


@dataclass
class RetentionState:
    """When this process next asks the database whether the day's purge is due."""

    next_check: float = 0.0  # time.monotonic()


def run_daily(app: Flask, now: datetime) -> None:
    """The daily job the delivery loops call: asks the database at most every CHECK_SECONDS."""
    state = state_of(app, RetentionState)
    if time.monotonic() < state.next_check:
        return
    state.next_check = time.monotonic() + CHECK_SECONDS
    with app.app_context():
        try:
            purge_if_due(now)
        except Exception:  # the delivery loop goes on; tomorrow's turn tries again
            db.session.rollback()
            log.exception("retention pass failed")
