"""The stored submission and the one transaction that keeps it with its mails."""

from __future__ import annotations

import shutil
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import String, Text, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, mapped_column

from . import outbox, uploads
from .config import Recipient
from .db import db, utcnow


class Submission(db.Model):
    """One message left on the contact page."""

    __tablename__ = "submission"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    submission_key: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    recipient_slug: Mapped[str] = mapped_column(String(100))
    recipient_name: Mapped[str] = mapped_column(String(200))
    recipient_address: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str] = mapped_column(String(320), index=True)
    subject: Mapped[str] = mapped_column(String(200))
    message: Mapped[str] = mapped_column(Text)
    attachment_name: Mapped[str | None] = mapped_column(String(255))
    attachment_path: Mapped[str | None] = mapped_column(String(255))
    attachment_type: Mapped[str | None] = mapped_column(String(100))
    attachment_size: Mapped[int | None]
    is_spam: Mapped[bool] = mapped_column(default=False)
    thank_you_sent: Mapped[bool] = mapped_column(default=False)
    remote_addr: Mapped[str | None] = mapped_column(String(64))


@dataclass
class ContactData:
    """What a valid form hands over: plain, validated values."""

    submission_key: str
    recipient: Recipient
    name: str
    email: str
    subject: str
    message: str
    upload: uploads.CheckedUpload | None
    is_spam: bool
    remote_addr: str | None


def find_by_key(key: str) -> Submission | None:
    """The submission already stored under this key, if any."""
    return db.session.scalar(select(Submission).filter_by(submission_key=key))


def _thank_you_allowed(email: str) -> bool:
    """At most CONTACT_THANK_YOU_PER_DAY thank-you mails to one address a day."""
    since = utcnow() - timedelta(days=1)
    count = db.session.scalar(
        select(func.count()).select_from(Submission).where(
            func.lower(Submission.email) == email.lower(), Submission.thank_you_sent,
            Submission.created_at >= since,
        )
    )
    return count < current_app.config["CONTACT_THANK_YOU_PER_DAY"]


def store_submission(data: ContactData) -> Submission:
    """Store the submission, its file and its outgoing mails in one commit.

    A second call with the same submission_key stores nothing and returns the first.
    """
    existing = find_by_key(data.submission_key)
    if existing is not None:
        return existing
    submission = _new_submission(data)
    folder = Path(current_app.config["UPLOAD_FOLDER"]) / submission.id
    try:
        if data.upload is not None and not data.is_spam:
            stored = uploads.store(data.upload, folder)
            submission.attachment_path = str(stored.relative_to(folder.parent))
        db.session.add(submission)
        if not data.is_spam:
            submission.thank_you_sent = _thank_you_allowed(data.email)
            outbox.enqueue(submission)
        db.session.commit()
    except IntegrityError:
        # Another request with the same key committed first: answer like it.
        db.session.rollback()
        shutil.rmtree(folder, ignore_errors=True)
        return find_by_key(data.submission_key)
    except BaseException:
        db.session.rollback()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return submission


def _new_submission(data: ContactData) -> Submission:
    """A Submission row built from validated data (not yet added)."""
    upload = data.upload
    return Submission(
        id=uuid.uuid4().hex,
        submission_key=data.submission_key,
        created_at=utcnow(),
        recipient_slug=data.recipient.slug,
        recipient_name=data.recipient.name,
        recipient_address=data.recipient.address,
        name=data.name,
        email=data.email,
        subject=data.subject,
        message=data.message,
        attachment_name=upload.filename if upload else None,
        attachment_type=upload.content_type if upload else None,
        attachment_size=upload.size if upload else None,
        is_spam=data.is_spam,
        remote_addr=data.remote_addr,
    )
