"""CSV and JSON exports of submissions, streamed page by page: memory stays flat.

Rows are read by keyset pagination (newest first, `PAGE_ROWS` at a time, each
page in a session of its own, files included) rather than one long cursor: a slow download
then holds no transaction open, which on SQLite would keep the WAL from being
checkpointed and on PostgreSQL would hold back VACUUM.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO, Any

import click
from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from ..delivery.models import MailKind, OutboxMail
from ..extensions import db
from ..forms import Form
from ..private_files import open_private
from ..submissions.answers import COLUMN_FIELDS, answers_of
from ..submissions.models import SPAM, Submission, SubmissionFile
from ..submissions.thread import Note, Reply

PAGE_ROWS = 500
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NO_MAIL = "none"
# The columns of an export of every form, in order: `status` is the owner's mail's (or
# spam), `state` the message's in the owner's inbox; `answers` holds each other field of
# the submission's form with its label and value (a form's own columns: `?form=`).
FIELDS = ("id", "created_at", "form", "name", "email", "recipient", "recipient_address",
          "subject", "message", "files", "status", "state", "answers")


def owner_mail_status() -> ColumnElement[str]:
    """"spam", else the state of the submission's newest owner mail ("none" without one)."""
    newest = (select(OutboxMail.status)
              .where(OutboxMail.submission_id == Submission.id, OutboxMail.kind == MailKind.OWNER)
              .order_by(OutboxMail.id.desc()).limit(1).correlate(Submission).scalar_subquery())
    return case((Submission.verdict == SPAM, SPAM), else_=func.coalesce(newest, NO_MAIL))


@dataclass(frozen=True)
class ExportRow:
    """One submission as the export reads it, with the state of its owner's mail."""

    submission: Submission
    status: str


@dataclass(frozen=True)
class ExportedFile:
    """What the export says of one file: never where it is stored."""

    field: str
    name: str
    content_type: str
    size: int
    stored: bool  # False once retention deleted it (the name stays on record)

    @classmethod
    def of(cls, stored: SubmissionFile) -> ExportedFile:
        """The export's view of a stored file."""
        return cls(stored.field, stored.name, stored.content_type, stored.size,
                   stored.path is not None)


def timestamp(value: datetime) -> str:
    """A stored (naive UTC) time as ISO 8601 with its offset."""
    return value.replace(tzinfo=UTC).isoformat(timespec="seconds")


def pages(query: Select[Any], engine: Engine | None = None) -> Iterator[Sequence[ExportRow]]:
    """The rows of `query`'s submissions (with their files), newest first, a page at a time."""
    engine = engine or db.engine
    base = (query.add_columns(owner_mail_status().label("status")).order_by(None)
            .order_by(Submission.created_at.desc(), Submission.id.desc()).limit(PAGE_ROWS))
    after: tuple[datetime, str] | None = None
    while True:
        page = base if after is None else base.where(or_(
            Submission.created_at < after[0],
            and_(Submission.created_at == after[0], Submission.id < after[1])))
        # Loaded whole (files included) before the session closes: nothing is read later.
        with Session(engine) as session:
            rows = [ExportRow(submission, status)
                    for submission, status in session.execute(page).tuples()]
        if rows:
            yield rows
        if len(rows) < PAGE_ROWS:
            return
        after = (rows[-1].submission.created_at, rows[-1].submission.id)


def columns(form: Form | None = None) -> tuple[str, ...]:
    """The export's column names: FIELDS, or for one form a column per field, in order."""
    if form is None:
        return FIELDS
    names = [field.name for field in form.fields]

    def free(name: str) -> str:  # a field may be called `id`, `status` or `state` too
        return f"submission_{name}" if name in names else name

    return (free("id"), free("created_at"), *names, free("status"), free("state"))


def values(row: ExportRow, form: Form | None = None) -> list[object]:
    """The row's values in the order of `columns(form)`, as stored."""
    submission = row.submission
    answers = answers_of(submission)
    if form is not None:
        found = {answer.name: answer.value for answer in answers}
        return [submission.id, submission.created_at,
                *(found.get(field.name) for field in form.fields), row.status,
                submission.state]
    return [submission.id, submission.created_at, submission.form_slug, submission.name,
            submission.email, submission.recipient_name, submission.recipient_address,
            submission.subject, submission.message,
            [ExportedFile.of(stored) for stored in submission.files], row.status,
            submission.state,
            [{"name": a.name, "type": a.type, "label": a.label, "value": a.value, **a.details}
             for a in answers if a.name not in COLUMN_FIELDS]]


def _cell_text(value: object) -> str:
    """A value as the text of one CSV cell: file names joined by "; ", answers as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, ExportedFile):
        return f"{value.name} ({value.size} bytes)"
    if isinstance(value, list) and all(isinstance(v, str | ExportedFile) for v in value):
        return "; ".join(_cell_text(item) for item in value)
    if isinstance(value, list | dict):
        return json.dumps(json_value(value), ensure_ascii=False)
    return str(value)


def csv_cell(value: object) -> str:
    """One CSV cell: times in ISO 8601, text that a spreadsheet would run prefixed with '."""
    if value is None:
        return ""
    text = _cell_text(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def json_value(value: object) -> object:
    """One JSON value: times in ISO 8601, files as objects, the rest as stored."""
    if isinstance(value, datetime):
        return timestamp(value)
    if isinstance(value, ExportedFile):
        return asdict(value)
    if isinstance(value, list | tuple):
        return [json_value(item) for item in value]
    if isinstance(value, dict):
        return {key: json_value(item) for key, item in value.items()}
    return value


def csv_chunks(query: Select[Any], form: Form | None = None) -> Iterator[str]:
    """The CSV export of `query`'s submissions (a header, then one row each), page by page;
    with a form, a column per field of that form."""
    return _csv_chunks(query, form, db.engine)  # the engine is taken now: no app context later


def _csv_chunks(query: Select[Any], form: Form | None, engine: Engine) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns(form))
    for rows in pages(query, engine):
        writer.writerows([csv_cell(value) for value in values(row, form)] for row in rows)
        yield _drain(buffer)
    if buffer.tell():
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    """What was written to the buffer since the last drain, leaving it empty."""
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


THREAD_KEY = "thread"  # the JSON export's replies and notes of each submission
EMPTY_THREAD: dict[str, list[dict[str, Any]]] = {"replies": [], "notes": []}


def reply_record(reply: Reply) -> dict[str, Any]:
    """A reply as the exports give it: who, when, what, and its file's name (never where)."""
    return {"author": reply.author, "created_at": timestamp(reply.created_at),
            "body": reply.body, "file_name": reply.file_name, "file_size": reply.file_size}


def thread_records(ids: Sequence[str], engine: Engine) -> dict[str, dict[str, list[Any]]]:
    """The replies and notes of these submissions, oldest first, by submission: the owner's
    JSON export alone carries them (the CSV has one cell per field)."""
    found: dict[str, dict[str, list[Any]]] = {}
    with Session(engine) as session:
        for reply in session.scalars(select(Reply).where(Reply.submission_id.in_(ids))
                                     .order_by(Reply.created_at, Reply.id)):
            entry = found.setdefault(reply.submission_id, {"replies": [], "notes": []})
            entry["replies"].append(reply_record(reply))
        for note in session.scalars(select(Note).where(Note.submission_id.in_(ids))
                                    .order_by(Note.created_at, Note.id)):
            entry = found.setdefault(note.submission_id, {"replies": [], "notes": []})
            entry["notes"].append({"author": note.author, "created_at": timestamp(note.created_at),
                                   "text": note.text})
    return found


def json_chunks(query: Select[Any], form: Form | None = None) -> Iterator[str]:
    """The JSON export of `query`'s submissions: an array of objects, page by page; with a
    form, a key per field of that form."""
    return _json_chunks(query, form, db.engine)


def _json_chunks(query: Select[Any], form: Form | None, engine: Engine) -> Iterator[str]:
    names = columns(form)
    # After every column, under a name no field of the form has.
    thread_key = "submission_thread" if THREAD_KEY in names else THREAD_KEY
    separator = "[\n"
    for rows in pages(query, engine):
        threads = thread_records([row.submission.id for row in rows], engine)
        yield separator + ",\n".join(json.dumps(
            {**{name: json_value(value) for name, value in zip(names, values(row, form),
                                                               strict=True)},
             thread_key: threads.get(row.submission.id, EMPTY_THREAD)},
            ensure_ascii=False) for row in rows)
        separator = ",\n"
    yield "[]\n" if separator == "[\n" else "\n]\n"


class PrivateOutput(click.File):
    """`--output`: standard output for `-`, else a file written 0600 whatever the umask."""

    def __init__(self) -> None:
        super().__init__("w", encoding="utf-8")

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> IO[Any]:
        """Open the file private (narrowed before it is emptied, if it was there), for writing."""
        if value == "-" or hasattr(value, "write"):
            return super().convert(value, param, ctx)
        try:
            fd = open_private(value, os.O_WRONLY | os.O_CREAT)
        except OSError as error:
            self.fail(f"'{click.format_filename(value)}': {error.strerror}", param, ctx)
        output = os.fdopen(fd, "w", encoding="utf-8")
        output.truncate()  # emptied once private: an old export is never readable in between
        if ctx is not None:
            ctx.call_on_close(output.close)
        return output
