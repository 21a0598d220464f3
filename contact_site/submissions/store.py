"""Storing a submission with its file and its outgoing mails, in one transaction."""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from ..database import utcnow
from ..extensions import db
from ..write_queue import writing
from .content import content_hash, new_submission_key
from .files import CheckedUpload, store_file
from .models import HAM, PENDING, SPAM, Submission, SubmissionFile, mailbox_key
from .queries import find_by_key, thank_you_count

# The first of PostgreSQL's two advisory-lock keys: this lock's own space of keys.
THANK_YOU_LOCK_SPACE = 0x5459  # "TY"


@dataclass(frozen=True)
class NewSubmission:
    """What a validated form hands over: the column values and the checked file."""

    key: str
    fields: Mapping[str, Any]  # Submission column names to values
    uploads: Sequence[tuple[str, CheckedUpload]] = ()  # (file field's name, checked file)
    remote_addr: str | None = None
    thank_you: bool = True  # the form sends one (within the daily cap, to ham only)
    # The key is a one-time token's: once stored, anything else sent with it is the same
    # submission, whatever it says (a form's own key folds only the same words).
    once: bool = False
    verdict: str | None = None  # ham, suspect or spam; None: not judged, stored as ham
    verdict_reasons: str = ""  # the reason codes, one a line (spam.Verdict.reasons_text)

    @property
    def held(self) -> bool:
        """Spam: stored for the record, with no file and no mail."""
        return self.verdict == SPAM

    @property
    def kind(self) -> str:
        """The verdict stored with the submission."""
        return self.verdict or HAM


def lock_mailbox(mailbox: str) -> None:
    """Hold, until this transaction ends, the lock under which a mailbox's mails are counted.

    Without it two requests could both count two thank-you mails and both promise
    the third. PostgreSQL: an advisory lock on this mailbox alone. SQLite: its one
    write lock, taken before the count (BEGIN IMMEDIATE), not at the first INSERT.
    """
    connection = db.session.connection()
    if connection.dialect.name == "postgresql":
        db.session.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
                           {"space": THANK_YOU_LOCK_SPACE, "key": mailbox})
        return
    dbapi = connection.connection.dbapi_connection
    # The sqlite3 module opens a transaction only before a write, so one already open
    # here has written, and holds the write lock already.
    if isinstance(dbapi, sqlite3.Connection) and not dbapi.in_transaction:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def thank_you_allowed(mailbox: str) -> bool:
    """At most CONTACT_THANK_YOU_PER_DAY thank-you mails to one mailbox a day.

    Call lock_mailbox first, in the transaction that stores the submission.
    """
    since = utcnow() - timedelta(days=1)
    return thank_you_count(mailbox, since) < int(current_app.config["CONTACT_THANK_YOU_PER_DAY"])


def store_submission(data: NewSubmission, enqueue: Callable[[Submission], object],
                     with_rows: Sequence[object] = ()) -> Submission:
    """Store the submission, its file, (through `enqueue`) its mails and `with_rows` (the
    spam defence's fingerprint) in one commit, added only after this function's reads.

    A second call with the same key and content stores nothing and returns the first;
    with the same key but other content it is a new submission under a fresh key (unless
    the key is a one-time token's: then it is the first, whatever it says).
    """
    content = content_hash(data.fields, data.uploads)
    existing = find_by_key(data.key)
    if existing is not None:
        if existing.content_hash == content or data.once:
            return existing
        data = replace(data, key=new_submission_key())
    submission = _new_submission(data, content)
    folder = Path(current_app.config["UPLOAD_FOLDER"]) / submission.id
    try:
        _store_upload(data, submission, folder)
        _add_and_commit(data, submission, enqueue, with_rows)
    except IntegrityError:
        # Another request with the same key committed first: answer like it.
        _undo(folder)
        first = find_by_key(data.key)
        if first is None:
            raise
        if first.content_hash != content and not data.once:
            return store_submission(replace(data, key=new_submission_key()), enqueue, with_rows)
        return first
    except BaseException:
        _undo(folder)
        raise
    return submission


def _new_submission(data: NewSubmission, content: str) -> Submission:
    """The row to store, with a new id, its verdict and its mailbox key (not yet added)."""
    submission = Submission(id=uuid.uuid4().hex, submission_key=data.key, created_at=utcnow(),
                            content_hash=content, verdict=data.kind,
                            verdict_reasons=data.verdict_reasons, remote_addr=data.remote_addr,
                            **data.fields)
    submission.mailbox_key = mailbox_key(submission.email)
    return submission


def _store_upload(data: NewSubmission, submission: Submission, folder: Path) -> None:
    """Store the checked files in the submission's folder, unless the submission is held."""
    if data.held:
        return
    for position, (field, upload) in enumerate(data.uploads):
        stored = store_file(upload, folder, f"{field}-{position}" if position else field)
        submission.files.append(SubmissionFile(
            field=field, position=position, name=upload.filename, size=upload.size,
            content_type=upload.content_type, path=str(stored.relative_to(folder.parent)),
            scan_state=PENDING if current_app.config["CONTACT_CLAMD"] else None))


def _add_and_commit(data: NewSubmission, submission: Submission,
                    enqueue: Callable[[Submission], object], with_rows: Sequence[object]) -> None:
    """Add the submission, its mails and `with_rows`, and commit, under the write queue."""
    with writing():
        if data.kind == HAM:  # a suspect submission is never thanked (docs/spam-verdicts.md)
            # Counted before anything is added to the session: autoflush would
            # otherwise write the row first, outside the lock on SQLite.
            lock_mailbox(submission.mailbox_key)
            submission.thank_you_promised = (data.thank_you
                                             and thank_you_allowed(submission.mailbox_key))
        db.session.add(submission)
        db.session.add_all(with_rows)
        if not data.held:
            enqueue(submission)
        # Kept as written, not expired: the answer reads the row it just stored, and
        # reloading it (and its files) would cost two more reads per submission.
        session = db.session()
        expiring, session.expire_on_commit = session.expire_on_commit, False
        try:
            session.commit()
        finally:
            session.expire_on_commit = expiring


def _undo(folder: Path) -> None:
    """Roll back the transaction and remove the file stored for it."""
    db.session.rollback()
    shutil.rmtree(folder, ignore_errors=True)
