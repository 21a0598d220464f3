"""A message's thread in the console: the owner's replies to the visitor and their notes.

A reply is stored, its file kept in the submission's upload folder (so it goes with
the submission: delete, erasure, retention), and queued through the outbox in the
same commit that marks the message answered. A note is stored and never mailed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from werkzeug.datastructures import FileStorage

from ..contact import uploads
from ..delivery import outbox
from ..delivery.backend import backend_of
from ..delivery.models import MailKind, OutboxMail
from ..extensions import db
from ..records.privacy import upload_root
from ..submissions.files import CheckedUpload, store_file
from ..submissions.models import ANSWERED, Submission
from ..submissions.thread import Note, Reply


@dataclass(frozen=True)
class Entry:
    """One item of the thread: a reply (with the mail that carries it) or a note."""

    created_at: datetime
    reply: Reply | None = None
    mail: OutboxMail | None = None
    note: Note | None = None


def thread_of(submission_id: str) -> list[Entry]:
    """The submission's replies and notes, oldest first."""
    mails = {row.reply_id: row for row in db.session.scalars(select(OutboxMail).where(
        OutboxMail.submission_id == submission_id, OutboxMail.kind == MailKind.REPLY))}
    replies = db.session.scalars(select(Reply).where(Reply.submission_id == submission_id))
    notes = db.session.scalars(select(Note).where(Note.submission_id == submission_id))
    entries = [Entry(r.created_at, reply=r, mail=mails.get(r.id)) for r in replies]
    entries += [Entry(n.created_at, note=n) for n in notes]
    return sorted(entries, key=lambda entry: entry.created_at)


def checked_file(file: FileStorage | None) -> CheckedUpload | None:
    """The reply's file checked like a visitor's upload (the site's rule); None for none.

    Raises what uploads.check raises, and UploadQuotaExceeded when there is no room.
    """
    if file is None or not file.filename:
        return None
    checked = uploads.check(file)
    uploads.ensure_room(checked.size)
    return checked


def reply(submission: Submission, author: str, body: str,
          file: CheckedUpload | None) -> Reply:
    """Store the reply, queue its mail, mark the message answered, all in one commit."""
    stored = Reply(submission_id=submission.id, author=author, body=body)
    db.session.add(stored)
    db.session.flush()  # its id names its file
    if file is not None:
        root = upload_root()
        path = store_file(file, root / submission.id, stem=f"reply-{stored.id}")
        stored.file_name, stored.file_path = file.filename, str(path.relative_to(root))
        stored.file_content_type, stored.file_size = file.content_type, file.size
    outbox.enqueue_reply(submission, stored)
    submission.state = ANSWERED
    db.session.commit()
    backend_of().wake()
    return stored


def add_note(submission: Submission, author: str, text: str) -> Note:
    """Keep a note on the message."""
    note = Note(submission_id=submission.id, author=author, text=text)
    db.session.add(note)
    db.session.commit()
    return note
