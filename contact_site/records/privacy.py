"""Deleting, erasing and disclosing what is held about a visitor (docs/privacy.md).

A submission's mails go with it, their attempts (ON DELETE CASCADE), then its
upload folder. Erasure also forgets the rate-limit counters of the addresses it
was posted from, and on SQLite rewrites the database file and empties its WAL,
where deleted rows otherwise linger (docs/stack-pitfalls.md). Logs and summaries carry counts,
never the address.

Removal is final for mail: deleting a mail's row is what cancels it, even in a
worker's running batch. A worker marks a mail in hand (a committed, conditional
UPDATE) before sending it and checks its row once more just before MAIL FROM
(delivery/worker.py). The mails are deleted here by one statement that returns
what each row held at that moment: one not marked in hand is counted cancelled
and is never sent after this commit; one marked is counted as already being
handed to the server, and goes out only if its worker was past that last check.
A webhook delivery's claim is checked just before its POST, but the delivery is not
marked in hand: any claimed one may be posting now, so it is counted as already being
handed over.
"""

from __future__ import annotations

import logging
import re
import shutil
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import Table, delete, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError

from ..database import utcnow
from ..delivery.health import shown_target
from ..delivery.models import DeliveryAttempt, MailKind, OutboxMail, Status
from ..extensions import db
from ..forms import local_text
from ..i18n import in_language
from ..ratelimit import DatabaseStorage, RateLimitCounter, limiter, network_of
from ..submissions.answers import answers_of
from ..submissions.models import Submission
from ..submissions.thread import Reply
from .archive import from_address
from .export import ExportedFile, json_value, reply_record, timestamp

log = logging.getLogger("contact_site.records")

BATCH = 500
CHECKPOINT_TRIES = 5
# Internal bookkeeping, not about the visitor: left out of the access export.
PRIVATE_COLUMNS = {"submission_key", "claim_token", "claimed_until"}


@dataclass(frozen=True)
class Removed:
    """What deleting some submissions took with it."""

    submissions: int = 0
    mails: int = 0
    cancelled: int = 0  # not yet handed to the server: now never will be
    attempts: int = 0
    files: int = 0
    in_flight: int = 0  # in a worker's hand at that moment: may be with the server already
    webhooks: int = 0  # webhook deliveries (their unsent ones counted with the mails')

    def __add__(self, other: Removed) -> Removed:
        return Removed(*(mine + theirs for mine, theirs in zip(
            astuple(self), astuple(other), strict=True)))


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
    in_flight: int = 0
    webhooks: int = 0

    def summary(self) -> str:
        """One line of counts, for the console, the command line and the audit log."""
        hooks = f" and {self.webhooks} webhook(s)" if self.webhooks else ""
        line = (f"erased {self.submissions} submission(s), {self.mails} mail(s){hooks} "
                f"({mail_note(self.cancelled, self.in_flight, bool(self.webhooks))}), "
                f"{self.attempts} delivery attempt(s), {self.files} file(s), "
                f"{self.rate_limit_counters} rate-limit counter(s)")
        return line + ("; database file rewritten" if self.database_scrubbed else "")


def mail_note(cancelled: int, in_flight: int, webhooks: bool = False) -> str:
    """What became of the mails (and `webhooks`: webhook deliveries) not yet sent, for the
    summaries."""
    return f"{cancelled} cancelled, {in_flight} already being handed " + (
        "over" if webhooks else "to the server")


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


def _delete_mails(ids: Sequence[str]) -> Removed:
    """Delete the mails of these submissions with their attempts (no commit); what went.

    One DELETE returns each row as it was when deleted, after any worker's commit
    on it: whether a worker had marked it in hand tells a mail possibly on the
    wire from one cancelled (see the module's docstring).
    """
    of_these = OutboxMail.submission_id.in_(ids)
    attempts = db.session.scalar(select(func.count()).select_from(DeliveryAttempt).join(
        OutboxMail, DeliveryAttempt.mail_id == OutboxMail.id).where(of_these)) or 0
    # Rows locked in id order first (PostgreSQL; SQLite locks the whole file), the order
    # in which a worker's UPDATE of its batch by primary key meets them: the two do not
    # each hold a row the other waits for.
    db.session.execute(select(OutboxMail.id).where(of_these).order_by(OutboxMail.id)
                       .with_for_update())
    gone = db.session.execute(delete(OutboxMail).where(of_these).returning(
        OutboxMail.kind, OutboxMail.status, OutboxMail.send_started_at)
        .execution_options(synchronize_session=False)).all()
    webhooks = sum(1 for kind, _status, _started in gone if kind == MailKind.WEBHOOK)
    in_hand = sum(1 for kind, status, started in gone if status == Status.SENDING
                  and (started is not None or kind == MailKind.WEBHOOK))
    unsent = sum(1 for _kind, status, _started in gone
                 if status in (Status.QUEUED, Status.SENDING))
    return Removed(mails=len(gone) - webhooks, cancelled=unsent - in_hand, in_flight=in_hand,
                   attempts=attempts, webhooks=webhooks)


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
    removed = Removed()
    with secure_delete():
        for chunk in _chunks(ids):
            # A worker holding a claim on one of these mails finds no row to record its
            # outcome on (record_* match id and claim token), so it never retries it.
            removed += _delete_mails(chunk)
            result = db.session.execute(delete(Submission).where(Submission.id.in_(chunk))
                                        .execution_options(synchronize_session=False))
            removed += Removed(submissions=int(result.rowcount))  # type: ignore[attr-defined]
    db.session.commit()
    db.session.expire_all()  # objects of the deleted rows must not be written back
    root = upload_root()
    files = sum(remove_upload_folder(submission_id, root) for submission_id in ids)
    return removed + Removed(files=files)


def delete_submission(submission_id: str) -> Removed | None:
    """Delete one submission, its mails, their attempts and its upload; None if none."""
    found = db.session.scalar(select(Submission.id).where(Submission.id == submission_id))
    if found is None:
        return None
    removed = delete_submissions([found])
    log.info("submission %s deleted with %d mail(s), %d webhook(s) (%s) and %d file(s)", found,
             removed.mails, removed.webhooks,
             mail_note(removed.cancelled, removed.in_flight, bool(removed.webhooks)),
             removed.files)
    return removed if removed.submissions == 1 else None


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
                      removed.files, counters, scrubbed, removed.in_flight, removed.webhooks)
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
    """A mail or webhook delivery with its attempts; a webhook's URL cut short, as the console
    shows it (the recipient is named, the token its path may hold is not given away)."""
    attempts = db.session.scalars(select(DeliveryAttempt).where(
        DeliveryAttempt.mail_id == mail.id).order_by(DeliveryAttempt.id))
    record = _plain(mail, OutboxMail.__table__)
    if mail.target is not None:
        record["target"] = shown_target(mail.target)
    return {**record,
            "delivery_attempts": [_plain(a, DeliveryAttempt.__table__) for a in attempts]}


def _answers_record(submission: Submission) -> list[dict[str, object]]:
    """Every field of its form in order, labelled in the visitor's language as sent; a
    consent with the exact text agreed to, its language and SHA-256."""
    with in_language(submission.language):
        return [{"name": answer.name, "type": answer.type,
                 "label": local_text(answer.label, submission.language),
                 "value": json_value(answer.value), **answer.details}
                for answer in answers_of(submission)]


def _submission_record(submission: Submission) -> dict[str, object]:
    mails = db.session.scalars(select(OutboxMail).where(
        OutboxMail.submission_id == submission.id).order_by(OutboxMail.id))
    return {**_plain(submission, Submission.__table__),
            "answers": _answers_record(submission),
            "files": [json_value(ExportedFile.of(stored)) for stored in submission.files],
            "mails": [_mail_record(mail) for mail in mails],
            # What the owner wrote back; notes are the team's own and stay out.
            "replies": [reply_record(reply) for reply in db.session.scalars(
                select(Reply).where(Reply.submission_id == submission.id)
                .order_by(Reply.created_at, Reply.id))]}


def visitor_export(address: str) -> dict[str, Any]:
    """Everything held about one address, for an access request (docs/privacy.md)."""
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
