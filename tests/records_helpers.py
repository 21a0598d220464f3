"""Helpers shared by the export, retention and erasure tests: storing and ageing submissions."""

from __future__ import annotations

import io
import uuid
from datetime import datetime, timedelta
from pathlib import Path

from flask import Flask
from sqlalchemy import func, insert, select

from contact_site.database import utcnow
from contact_site.delivery import outbox
from contact_site.delivery.models import DeliveryAttempt, Kind, OutboxMail
from contact_site.extensions import db
from contact_site.submissions.files import CheckedUpload
from contact_site.submissions.models import Submission
from contact_site.submissions.store import NewSubmission, store_submission

PDF = b"%PDF-1.4\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def store(app: Flask, email: str = "ada@example.com", *, name: str = "Ada Lovelace",
          subject: str = "Engines", message: str = "About the analytical engine.",
          remote_addr: str | None = "203.0.113.7", attachment: bytes | None = None,
          spam: bool = False) -> str:
    """Store one submission the way the form does (file, mails, one commit); its id."""
    with app.app_context():
        recipient = app.config["CONTACT_RECIPIENTS"][0]
        upload = None if attachment is None else CheckedUpload(
            io.BytesIO(attachment), "report.pdf", "pdf", "application/pdf", len(attachment))
        fields = {"recipient_slug": recipient.slug, "recipient_name": recipient.name,
                  "recipient_address": recipient.address, "name": name, "email": email,
                  "subject": subject, "message": message}
        stored = store_submission(NewSubmission(uuid.uuid4().hex, fields, upload, spam,
                                                remote_addr), outbox.enqueue_submission)
        return stored.id


def age(app: Flask, submission_id: str, days: float) -> None:
    """Make a submission (and its mails' times) `days` older than they are."""
    shift = timedelta(days=days)
    with app.app_context():
        found = db.session.get(Submission, submission_id)
        assert found is not None
        found.created_at -= shift
        for mail in db.session.scalars(select(OutboxMail).where(
                OutboxMail.submission_id == submission_id)):
            mail.created_at -= shift
            mail.sent_at = mail.sent_at and mail.sent_at - shift
        db.session.commit()


def submission(app: Flask, submission_id: str) -> Submission | None:
    """One submission, detached, or None once deleted."""
    with app.app_context():
        found = db.session.get(Submission, submission_id)
        if found is not None:
            db.session.expunge(found)
        return found


def counts(app: Flask) -> dict[str, int]:
    """Rows in the tables a submission spreads over."""
    with app.app_context():
        return {name: int(db.session.scalar(select(func.count()).select_from(model)) or 0)
                for name, model in (("submission", Submission), ("outbox", OutboxMail),
                                    ("delivery_attempt", DeliveryAttempt))}


def owner_sent_at(app: Flask, submission_id: str) -> datetime:
    """When the submission's owner mail was sent."""
    with app.app_context():
        sent = db.session.scalar(select(OutboxMail.sent_at).where(
            OutboxMail.submission_id == submission_id, OutboxMail.kind == Kind.OWNER))
        assert sent is not None, "the owner's mail was not sent"
        return sent


def upload_folder(app: Flask, submission_id: str) -> Path:
    """Where a submission's upload is stored."""
    return Path(app.config["UPLOAD_FOLDER"]) / submission_id


def bulk(app: Flask, count: int, *, created_at: datetime | None = None, spam: bool = False,
         message: str = "About the analytical engine.",
         apart: timedelta = timedelta(0)) -> None:
    """Insert `count` submissions (no mails) in one statement, `apart` from each other."""
    with app.app_context():
        recipient = app.config["CONTACT_RECIPIENTS"][0]
        when = created_at or utcnow()
        db.session.execute(insert(Submission), [{
            "id": uuid.uuid4().hex, "submission_key": uuid.uuid4().hex,
            "created_at": when - number * apart,
            "recipient_slug": recipient.slug, "recipient_name": recipient.name,
            "recipient_address": recipient.address, "name": f"Visitor {number}",
            "email": f"visitor{number}@example.com", "subject": f"Subject {number}",
            "message": message, "is_spam": spam, "thank_you_sent": False,
        } for number in range(count)])
        db.session.commit()
