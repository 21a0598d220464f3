"""CSV and JSON exports of submissions, streamed page by page: memory stays flat.

Rows are read by keyset pagination (newest first, `PAGE_ROWS` at a time, each
page on a connection of its own) rather than one long cursor: a slow download
then holds no transaction open, which on SQLite would keep the WAL from being
checkpointed and on PostgreSQL would hold back VACUUM.
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import IO, Any

import click
from sqlalchemy import Select, and_, case, func, or_, select
from sqlalchemy.engine import Engine, RowMapping
from sqlalchemy.sql.elements import ColumnElement

from ..delivery.models import MailKind, OutboxMail
from ..extensions import db
from ..private_files import open_private
from ..submissions.models import SPAM, Submission

PAGE_ROWS = 500
# A spreadsheet runs a cell that starts with one of these as a formula (OWASP "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NO_MAIL = "none"


def owner_mail_status() -> ColumnElement[str]:
    """"spam", else the state of the submission's newest owner mail ("none" without one)."""
    newest = (select(OutboxMail.status)
              .where(OutboxMail.submission_id == Submission.id, OutboxMail.kind == MailKind.OWNER)
              .order_by(OutboxMail.id.desc()).limit(1).correlate(Submission).scalar_subquery())
    return case((Submission.verdict == SPAM, SPAM), else_=func.coalesce(newest, NO_MAIL))


# Field name → column, in the order of the CSV header.
COLUMNS: dict[str, ColumnElement[Any]] = {
    "id": Submission.id.expression,
    "created_at": Submission.created_at.expression,
    "name": Submission.name.expression,
    "email": Submission.email.expression,
    "recipient": Submission.recipient_name.expression,
    "recipient_address": Submission.recipient_address.expression,
    "subject": Submission.subject.expression,
    "message": Submission.message.expression,
    "attachment_name": Submission.attachment_name.expression,
    "attachment_type": Submission.attachment_type.expression,
    "attachment_size": Submission.attachment_size.expression,
    "status": owner_mail_status(),
}
FIELDS = tuple(COLUMNS)


def timestamp(value: datetime) -> str:
    """A stored (naive UTC) time as ISO 8601 with its offset."""
    return value.replace(tzinfo=UTC).isoformat(timespec="seconds")


def pages(query: Select[Any], engine: Engine | None = None) -> Iterator[Sequence[RowMapping]]:
    """The export rows of `query`'s submissions, newest first, one page at a time."""
    engine = engine or db.engine
    base = (query.with_only_columns(*(c.label(n) for n, c in COLUMNS.items()))
            .order_by(None).order_by(Submission.created_at.desc(), Submission.id.desc())
            .limit(PAGE_ROWS))
    after: tuple[datetime, str] | None = None
    while True:
        page = base if after is None else base.where(or_(
            Submission.created_at < after[0],
            and_(Submission.created_at == after[0], Submission.id < after[1])))
        with engine.connect() as conn:
            rows = conn.execute(page).mappings().all()
        if rows:
            yield rows
        if len(rows) < PAGE_ROWS:
            return
        after = (rows[-1]["created_at"], rows[-1]["id"])


def csv_cell(value: object) -> str:
    """One CSV cell: times in ISO 8601, text that a spreadsheet would run prefixed with '."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return timestamp(value)
    text = str(value)
    return f"'{text}" if text.startswith(FORMULA_STARTS) else text


def json_value(value: object) -> object:
    """One JSON value: times in ISO 8601, the rest as stored."""
    return timestamp(value) if isinstance(value, datetime) else value


def csv_chunks(query: Select[Any]) -> Iterator[str]:
    """The CSV export of `query`'s submissions (a header, then one row each), page by page."""
    return _csv_chunks(query, db.engine)  # the engine is taken now: no app context needed later


def _csv_chunks(query: Select[Any], engine: Engine) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(FIELDS)
    for rows in pages(query, engine):
        writer.writerows([csv_cell(row[name]) for name in FIELDS] for row in rows)
        yield _drain(buffer)
    if buffer.tell():
        yield _drain(buffer)


def _drain(buffer: io.StringIO) -> str:
    """What was written to the buffer since the last drain, leaving it empty."""
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text


def json_chunks(query: Select[Any]) -> Iterator[str]:
    """The JSON export of `query`'s submissions: an array of objects, page by page."""
    return _json_chunks(query, db.engine)


def _json_chunks(query: Select[Any], engine: Engine) -> Iterator[str]:
    separator = "[\n"
    for rows in pages(query, engine):
        yield separator + ",\n".join(json.dumps(_record(row), ensure_ascii=False) for row in rows)
        separator = ",\n"
    yield "[]\n" if separator == "[\n" else "\n]\n"


def _record(row: RowMapping) -> dict[str, object]:
    return {name: json_value(row[name]) for name in FIELDS}


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
