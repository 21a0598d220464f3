"""The submission factory: submissions stored straight in the database, their mails queued.

One place makes up a submission's values (`submission_values`); the rest choose how many
and how they are stored. Tests about the form post it instead (support.forms.post_form).

    create_submission(app, email="grace@example.com")  # one, with its mails; its id
    queue_submissions(app, count=3, thank_you=True)    # several in one commit; the mail ids
    insert_submissions(app, 10_000)                    # many rows in one statement, no mails
    build_submission(name="")                          # not stored: for composing alone
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from flask import Flask
from sqlalchemy import insert

from contact_site.config import Recipient
from contact_site.database import utcnow
from contact_site.delivery import outbox
from contact_site.extensions import db
from contact_site.submissions.models import Submission

SALES = Recipient("sales", "Sales", "sales@example.com")
# The `make_submission` fixture: create_submission bound to the test's app.
MakeSubmission = Callable[..., str]


def submission_values(number: int = 0, recipient: Recipient = SALES, thank_you: bool = False,
                      **fields: Any) -> dict[str, Any]:
    """The columns of the `number`th made-up submission, as the form fills them, `fields`
    changed; with `thank_you`, a thank-you mail was promised (the daily cap allowed it)."""
    return {
        "id": uuid.uuid4().hex, "submission_key": uuid.uuid4().hex, "created_at": utcnow(),
        "recipient_slug": recipient.slug, "recipient_name": recipient.name,
        "recipient_address": recipient.address, "name": "Ada Lovelace",
        "email": "ada@example.com", "subject": f"Engines {number}",
        "message": "Hello,\nabout the analytical engine.", "thank_you_promised": thank_you,
        **fields,
    }


def build_submission(**fields: Any) -> Submission:
    """A submission to the first test recipient, not stored (composing needs no database)."""
    return Submission(**submission_values(**fields))


def create_submissions(app: Flask, count: int = 1, *, each: Sequence[Mapping[str, Any]] = (),
                       attachment: bytes | None = None,
                       **fields: Any) -> list[tuple[str, list[int]]]:
    """Store `count` submissions to the app's first recipient in one commit (or one per
    mapping in `each`, its fields over `fields`), each with the mails its verdict earns (as
    the form queues them) and `attachment` as its upload; (submission id, outbox ids) of each."""
    with app.app_context():
        recipient = app.config["CONTACT_RECIPIENTS"][0]
        made = []
        for number, own in enumerate(each or [{}] * count):
            values = submission_values(number, recipient, **{**fields, **own})
            submission = Submission(**values)
            if attachment is not None:
                _attach(app, submission, attachment)
            db.session.add(submission)
            made.append((submission, outbox.enqueue_submission(submission)))
        db.session.commit()
        return [(submission.id, [mail.id for mail in mails]) for submission, mails in made]


def create_submission(app: Flask, **fields: Any) -> str:
    """Store one submission with its mails (see create_submissions); its id."""
    [(submission_id, _mails)] = create_submissions(app, **fields)
    return submission_id


def queue_submissions(app: Flask, count: int = 1, **fields: Any) -> list[int]:
    """Store `count` submissions with their mails in one commit; the outbox ids, in order."""
    return [mail for _id, mails in create_submissions(app, count, **fields) for mail in mails]


def _attach(app: Flask, submission: Submission, data: bytes) -> None:
    """Store `data` as the submission's upload, where the upload code would."""
    folder = Path(app.config["UPLOAD_FOLDER"]) / submission.id
    folder.mkdir(parents=True)
    (folder / "attachment.pdf").write_bytes(data)
    submission.attachment_path = f"{submission.id}/attachment.pdf"
    submission.attachment_name = "report.pdf"
    submission.attachment_type = "application/pdf"
    submission.attachment_size = len(data)


def insert_submissions(app: Flask, count: int, *, created_at: datetime | None = None,
                       apart: timedelta = timedelta(0), **fields: Any) -> None:
    """Insert `count` submissions (no mails, no files) in one statement, `apart` in time: for
    tests and benchmarks of thousands of rows."""
    with app.app_context():
        recipient = app.config["CONTACT_RECIPIENTS"][0]
        when = created_at or utcnow()
        db.session.execute(insert(Submission), [
            submission_values(number, recipient, **{
                "created_at": when - number * apart, "name": f"Visitor {number}",
                "email": f"visitor{number}@example.com", "subject": f"Subject {number}",
                **fields})
            for number in range(count)])
        db.session.commit()
