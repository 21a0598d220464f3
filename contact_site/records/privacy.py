"""Deleting, erasing and disclosing what is held about a visitor (SPEC §10).

A submission's mails and their attempts go with it (ON DELETE CASCADE), then its
upload folder. Erasure also forgets the rate-limit counters of the addresses it
was posted from, and on SQLite rewrites the database file and empties its WAL,
where deleted rows otherwise linger (TRAPS.md). Logs and summaries carry counts,
never the address.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import Table, delete, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from ..database import utcnow
from ..delivery.models import DeliveryAttempt, OutboxMail, Status
from ..extensions import db
from ..ratelimit import DatabaseStorage, RateLimitCounter, limiter, network_of
from ..submissions.models import Submission
from .archive import from_address
from .export import json_value, timestamp

log = logging.getLogger("contact_site.records")

BATCH = 500
CHECKPOINT_TRIES = 5
# Internal bookkeeping, not about the visitor: left out of the access export.
PRIVATE_COLUMNS = {"submission_key", "attachment_path", "claim_token", "claimed_until"}


@dataclass(frozen=True)
class Removed:
    """What deleting some submissions took with it."""

    submissions: int = 0
    mails: int = 0
    cancelled: int = 0  # queued or being sent: they will not be (re)sent
    attempts: int = 0
    files: int = 0


@dataclass(frozen=True)
class Erasure:
    """What erasing one address removed; it names no address."""

    submissions: int
    mails: int
    cancelled: int
    attempts: int
    files: int
    rate_limit_counters: int
    database_scrubbed: bool  # SQLite rewritten and its WAL emptied (always False elsewhere)

    def summary(self) -> str:
        """One line of counts, for the console, the command line and the audit log."""
        line = (f"erased {self.submissions} submission(s), {self.mails} mail(s) "
                f"({self.cancelled} not yet sent, cancelled), {self.attempts} delivery "
                f"attempt(s), {self.files} file(s), {self.rate_limit_counters} rate-limit "
                f"counter(s)")
        return line + ("; database file rewritten" if self.database_scrubbed else "")


def upload_root() -> Path:
    """The upload folder, resolved."""
    return Path(current_app.config["UPLOAD_FOLDER"]).resolve()


def remove_upload_folder(submission_id: str, root: Path | None = None) -> int:
    """Delete a submission's upload folder; the number of files it held."""
    root = root or upload_root()
    folder = (root / submission_id).resolve()
    if folder.parent != root or not folder.is_dir():  # never anything outside the upload folder
        return 0
    files = sum(1 for path in folder.rglob("*") if path.is_file())
    shutil.rmtree(folder, ignore_errors=True)
    return files


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), BATCH):
        yield ids[start:start + BATCH]


def _count_mails(ids: Sequence[str]) -> tuple[int, int, int]:
    """Mails, mails not yet sent, and attempts belonging to these submissions."""
    mails = cancelled = attempts = 0
    for chunk in _chunks(ids):
        of_these = OutboxMail.submission_id.in_(chunk)
        mails += db.session.scalar(select(func.count()).where(of_these)) or 0
        cancelled += db.session.scalar(select(func.count()).where(
            of_these, OutboxMail.status.in_([Status.QUEUED, Status.SENDING]))) or 0
        attempts += db.session.scalar(select(func.count()).select_from(DeliveryAttempt).join(
            OutboxMail, DeliveryAttempt.mail_id == OutboxMail.id).where(of_these)) or 0
    return mails, cancelled, attempts


@contextmanager
def secure_delete() -> Iterator[None]:
    """On SQLite, deleted content is overwritten with zeros by this session's connection."""
    connection = db.session.connection()
    if connection.dialect.name != "sqlite":
        yield
        return
    # Some builds (Debian's) default to ON, others to OFF: set it, then put it back.
    before = int(connection.exec_driver_sql("PRAGMA secure_delete").scalar_one())
    connection.exec_driver_sql("PRAGMA secure_delete=ON")
    try:
        yield
    finally:
        connection.exec_driver_sql(f"PRAGMA secure_delete={before}")


def delete_submissions(ids: Sequence[str]) -> Removed:
    """Delete these submissions with their mails, attempts and files; one commit."""
    ids = list(ids)
    if not ids:
        return Removed()
    mails, cancelled, attempts = _count_mails(ids)
    deleted = 0
    with secure_delete():
        for chunk in _chunks(ids):
            # A worker holding a claim on one of these mails finds no row to record its
            # outcome on (record_* match id and claim token), so it never retries it.
            result = db.session.execute(delete(Submission).where(Submission.id.in_(chunk))
                                        .execution_options(synchronize_session=False))
            deleted += int(result.rowcount)  # type: ignore[attr-defined]
    db.session.commit()
    db.session.expire_all()  # objects of the deleted rows must not be written back
    root = upload_root()
    files = sum(remove_upload_folder(submission_id, root) for submission_id in ids)
    return Removed(deleted, mails, cancelled, attempts, files)


def delete_submission(submission_id: str) -> bool:
    """Delete one submission, its mails, their attempts and its upload; False if none."""
    found = db.session.scalar(select(Submission.id).where(Submission.id == submission_id))
    if found is None:
        return False
    removed = delete_submissions([found])
    log.info("submission %s deleted with %d mail(s) and %d file(s)", found, removed.mails,
             removed.files)
    return removed.submissions == 1


def _counter_fragments(remote_addrs: Iterable[str | None]) -> set[str]:
    """How the rate limiter names these client addresses inside its keys."""
    fragments: set[str] = set()
    for address in filter(None, remote_addrs):
        fragments.update({address, network_of(address)})
    return fragments


def forget_rate_limits(remote_addrs: Iterable[str | None]) -> int:
    """Delete the rate-limit counters kept for these client addresses (the caller commits)."""
    table: Table = RateLimitCounter.__table__
    fragments = sorted(_counter_fragments(remote_addrs))
    removed = 0
    for start in range(0, len(fragments), BATCH):
        # Flask-Limiter's keys read LIMITER/<client>/<endpoint>/<amount>/<multiples>/<unit>.
        wanted = or_(*(table.c.key.contains(f"/{fragment}/", autoescape=True)
                       for fragment in fragments[start:start + BATCH]))
        removed += int(db.session.execute(delete(table).where(wanted)).rowcount)  # type: ignore[attr-defined]
    return removed + _forget_redis_counters(fragments)


def _glob_escape(text: str) -> str:
    """Redis MATCH patterns treat * ? [ ] and backslash as special."""
    return re.sub(r"([][*?\\])", r"\\\1", text)


def _forget_redis_counters(fragments: Sequence[str]) -> int:
    """With RATELIMIT_STORAGE_URI on Redis, delete the counters kept there as well."""
    storage = limiter.storage
    client: Any = getattr(storage, "storage", None)
    prefix = getattr(storage, "key_prefix", None)
    if isinstance(storage, DatabaseStorage) or prefix is None or not hasattr(client, "scan_iter"):
        return 0
    removed = 0
    try:
        for fragment in fragments:
            pattern = f"{prefix}:LIMITER/{_glob_escape(fragment)}/*"
            keys = list(client.scan_iter(match=pattern, count=1000))
            removed += int(client.delete(*keys)) if keys else 0
    except Exception as error:  # Redis unreachable: its windows end within a day anyway
        log.warning("erasure: rate-limit counters in Redis not removed (%s)",
                    type(error).__name__)
    return removed


def erase_address(address: str) -> Erasure:
    """Remove everything held about one address: submissions, mails, history, files, counters."""
    found = db.session.execute(
        select(Submission.id, Submission.remote_addr).where(from_address(address))).all()
    ids = [row.id for row in found]
    with secure_delete():
        counters = forget_rate_limits(row.remote_addr for row in found)
    removed = delete_submissions(ids)  # commits the counters too
    if not ids:
        db.session.commit()
    scrubbed = scrub_sqlite(db.engine)
    erasure = Erasure(removed.submissions, removed.mails, removed.cancelled, removed.attempts,
                      removed.files, counters, scrubbed)
    log.info("erasure: %s", erasure.summary())
    return erasure


def _pause(seconds: float) -> None:
    """Sleep; under a faked clock (libfaketime) time.sleep can fail, a timed wait does not."""
    try:
        time.sleep(seconds)
    except OSError:
        threading.Event().wait(seconds)


def scrub_sqlite(engine: Engine) -> bool:
    """On SQLite, rewrite the file (VACUUM) and empty the WAL; False elsewhere or if busy.

    secure_delete zeroes what a delete frees, but older copies of a row left by
    earlier updates sit in free space it never saw, and the WAL keeps every page
    written until a checkpoint: VACUUM rewrites the file, TRUNCATE empties the WAL.
    """
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return False
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        try:
            conn.exec_driver_sql("VACUUM")
        except OperationalError as error:  # another connection kept writing past the timeout
            log.warning("erasure: VACUUM not possible now (%s); run it later",
                        type(error).__name__)
            return False
        for _ in range(CHECKPOINT_TRIES):
            busy, _pages, _done = conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)").one()
            if not busy:
                return True
            _pause(0.5)  # a reader still holds an old snapshot: it lets go soon
    log.warning("erasure: the SQLite WAL is still in use; its old pages go at the next checkpoint")
    return False


def _plain(row: object, table: Table) -> dict[str, object]:
    """The row's columns as JSON values, bookkeeping left out."""
    return {column.key: json_value(getattr(row, column.key)) for column in table.columns
            if column.key not in PRIVATE_COLUMNS}


def _mail_record(mail: OutboxMail) -> dict[str, object]:
    attempts = db.session.scalars(select(DeliveryAttempt).where(
        DeliveryAttempt.mail_id == mail.id).order_by(DeliveryAttempt.id))
    return {**_plain(mail, OutboxMail.__table__),
            "delivery_attempts": [_plain(a, DeliveryAttempt.__table__) for a in attempts]}


def _submission_record(submission: Submission) -> dict[str, object]:
    mails = db.session.scalars(select(OutboxMail).where(
        OutboxMail.submission_id == submission.id).order_by(OutboxMail.id))
    return {**_plain(submission, Submission.__table__),
            "attachment_stored": submission.attachment_path is not None,
            "mails": [_mail_record(mail) for mail in mails]}


def visitor_export(address: str) -> dict[str, Any]:
    """Everything held about one address, for an access request (SPEC §10)."""
    submissions = list(db.session.scalars(
        select(Submission).where(from_address(address))
        .order_by(Submission.created_at, Submission.id)))
    fragments = sorted(_counter_fragments(s.remote_addr for s in submissions))
    counters: list[RateLimitCounter] = list(db.session.scalars(select(RateLimitCounter).where(
        or_(*(RateLimitCounter.key.contains(f"/{f}/", autoescape=True) for f in fragments)))
    )) if fragments else []
    config = current_app.config
    return {
        "address": address,
        "exported_at": timestamp(utcnow()),
        "retention_days": {
            "submissions": config["CONTACT_RETENTION_DAYS"],
            "uploads_after_delivery": config["CONTACT_UPLOAD_RETENTION_DAYS"],
            "spam": config["CONTACT_SPAM_RETENTION_DAYS"]},
        "submissions": [_submission_record(submission) for submission in submissions],
        "rate_limit_counters": [
            {"key": c.key, "count": c.count,
             "expires_at": timestamp(_from_epoch(c.expires_at))} for c in counters],
    }


def _from_epoch(seconds: float) -> datetime:
    """A rate-limit counter's epoch seconds as a stored (naive UTC) time."""
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)
