"""The submission factory: submissions stored straight in the database, their mails queued.

One place makes up a submission's values (`submission_values`); the rest choose how many
and how they are stored. Tests about the form post it instead (support.forms.post_form).

    create_submission(app, email="grace@example.com")  # one, with its mails; its id
    queue_submissions(app, count=3, thank_you=True)    # several in one commit; the mail ids
    insert_submissions(app, 10_000)                    # many rows in one statement, no mails
    build_submission(name="")                          # not stored: for composing alone
"""

from __future__ import annotations

import hashlib
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
from contact_site.forms import Field, declaration_of, local_text
from contact_site.submissions.answers import COLUMN_FIELDS, stored_entry
from contact_site.submissions.models import Submission, SubmissionFile

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
                       attachment: bytes | None = None, attachment_name: str = "report.pdf",
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
                _attach(app, submission, attachment, attachment_name)
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


def _attach(app: Flask, submission: Submission, data: bytes, name: str = "report.pdf") -> None:
    """Store `data` as the submission's upload named `name`, where the upload code would."""
    folder = Path(app.config["UPLOAD_FOLDER"]) / submission.id
    folder.mkdir(parents=True)
    (folder / "attachment.pdf").write_bytes(data)
    submission.files.append(SubmissionFile(
        field="attachment", position=0, name=name, path=f"{submission.id}/attachment.pdf",
        content_type="application/pdf", size=len(data)))


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


# (field, name as sent, bytes) of one file of a declared form.
SentFile = tuple[str, str, bytes]
CONTENT_TYPES = {"pdf": "application/pdf", "png": "image/png", "txt": "text/plain"}


def _declared_entry(field: Field, values: Mapping[str, Any], files: Sequence[SentFile],
           language: str) -> dict[str, Any]:
    """One field's stored entry, as the form writes it."""
    value = values.get(field.name)
    details: dict[str, Any] = {}
    if field.type == "file":
        value = [name for sent_field, name, _data in files if sent_field == field.name]
    elif field.type in ("checkbox", "consent"):
        value = bool(value)
    if field.type == "consent" and field.text is not None:
        shown = local_text(field.text, language)
        details = {"text": shown, "language": language,
                   "sha256": hashlib.sha256(shown.encode()).hexdigest()}
    option = next((o for o in field.options if o.value == value), None)
    if option is not None:
        details["option_label"] = option.label
    return stored_entry(field.name, field.type, field.label, value, **details)


def _attach_files(app: Flask, submission_id: str, files: Sequence[SentFile]) -> None:
    """Write the files under UPLOAD_FOLDER/<id>/ and record each, in order."""
    folder = Path(app.config["UPLOAD_FOLDER"]) / submission_id
    folder.mkdir(parents=True)
    with app.app_context():
        submission = db.session.get(Submission, submission_id)
        assert submission is not None
        for position, (field, name, data) in enumerate(files):
            extension = name.rpartition(".")[2]
            stored = f"{field}-{position}.{extension}"
            (folder / stored).write_bytes(data)
            submission.files.append(SubmissionFile(
                field=field, position=position, name=name, path=f"{submission_id}/{stored}",
                content_type=CONTENT_TYPES[extension], size=len(data)))
        db.session.commit()


def store_declared(app: Flask, slug: str, values: Mapping[str, Any],
                   files: Sequence[SentFile] = (), language: str = "en",
                   labels: Mapping[str, Any] | None = None, **columns: Any) -> str:
    """Store a submission of a declared form as the form would (its mails queued): every
    field with the label declared now, a consent's text in `language` with its SHA-256,
    `files` written under UPLOAD_FOLDER/<id>/; `labels` replaces labels as if the file
    said otherwise then. Its id."""
    with app.app_context():
        form = declaration_of(app).form(slug)
        assert form is not None, slug
        answers = [_declared_entry(field, values, files, language) for field in form.fields]
        recipient = next((r for r in form.recipients if r.slug == values.get("recipient")),
                         form.recipients[0])
    for answer in answers:
        answer["label"] = (labels or {}).get(answer["name"], answer["label"])
    own = {column: values[name] for name, column in COLUMN_FIELDS.items()
           if name in values and name != "recipient"}
    submission_id = create_submission(
        app, form_slug=slug, form_version=form.version, answers=answers, language=language,
        recipient_slug=recipient.slug, recipient_name=recipient.name,
        recipient_address=recipient.address, **{**own, **columns})
    if files:
        _attach_files(app, submission_id, files)
    return submission_id

