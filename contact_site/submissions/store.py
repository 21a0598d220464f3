"""Storing a submission with its file and its outgoing mails, in one transaction."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from flask import current_app
from sqlalchemy.exc import IntegrityError

from ..database import utcnow
from ..extensions import db
from .files import CheckedUpload, store_file
from .models import Submission
from .queries import find_by_key, thank_you_count


@dataclass(frozen=True)
class NewSubmission:
    """What a validated form hands over: the column values and the checked file."""

    key: str
    fields: Mapping[str, Any]  # Submission column names to values
    upload: CheckedUpload | None = None
    is_spam: bool = False
    remote_addr: str | None = None


def thank_you_allowed(email: str) -> bool:
    """At most CONTACT_THANK_YOU_PER_DAY thank-you mails to one address a day."""
    since = utcnow() - timedelta(days=1)
    return thank_you_count(email, since) < current_app.config["CONTACT_THANK_YOU_PER_DAY"]


def store_submission(data: NewSubmission,
                     enqueue: Callable[[Submission], object]) -> Submission:
    """Store the submission, its file and (through `enqueue`) its mails in one commit.

    A second call with the same key stores nothing and returns the first.
    """
    existing = find_by_key(data.key)
    if existing is not None:
        return existing
    submission = Submission(id=uuid.uuid4().hex, submission_key=data.key, created_at=utcnow(),
                            is_spam=data.is_spam, remote_addr=data.remote_addr, **data.fields)
    folder = Path(current_app.config["UPLOAD_FOLDER"]) / submission.id
    try:
        if data.upload is not None and not data.is_spam:
            stored = store_file(data.upload, folder)
            submission.attachment_name = data.upload.filename
            submission.attachment_type = data.upload.content_type
            submission.attachment_size = data.upload.size
            submission.attachment_path = str(stored.relative_to(folder.parent))
        if not data.is_spam:
            submission.thank_you_sent = thank_you_allowed(submission.email)
        db.session.add(submission)
        if not data.is_spam:
            enqueue(submission)
        db.session.commit()
    except IntegrityError:
        # Another request with the same key committed first: answer like it.
        db.session.rollback()
        shutil.rmtree(folder, ignore_errors=True)
        first = find_by_key(data.key)
        if first is None:
            raise
        return first
    except BaseException:
        db.session.rollback()
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return submission
