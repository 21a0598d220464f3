"""Reading and ageing stored submissions, for the export, retention and erasure tests."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from flask import Flask
from sqlalchemy import func, select

from contact_site.delivery.models import DeliveryAttempt, MailKind, OutboxMail
from contact_site.extensions import db
from contact_site.submissions.models import Submission


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
            OutboxMail.submission_id == submission_id, OutboxMail.kind == MailKind.OWNER))
        assert sent is not None, "the owner's mail was not sent"
        return sent


def upload_folder(app: Flask, submission_id: str) -> Path:
    """Where a submission's upload is stored."""
    return Path(app.config["UPLOAD_FOLDER"]) / submission_id
