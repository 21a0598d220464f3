"""CSV and JSON exports (docs/privacy.md): every field, filters applied, formulas neutralised,
streamed."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest
from flask import Flask, Response

from contact_site.records import export
from contact_site.records.archive import filtered
from support.factories import MakeSubmission, insert_submissions
from support.files import PDF
from support.outbox import deliver_now
from support.smtp_server import SMTPTestServer

pytestmark = [pytest.mark.manual_delivery, pytest.mark.each_database]

REQUIRED = ("id", "created_at", "form", "name", "email", "recipient", "subject", "message",
            "files", "status", "answers")


def csv_rows(app: Flask, q: str | None = None, status: str = "all") -> list[dict[str, str]]:
    """The CSV export parsed by the csv module."""
    with app.app_context():
        text = "".join(export.csv_chunks(filtered(q, status)))
    return list(csv.DictReader(io.StringIO(text, newline="")))


def json_rows(app: Flask, q: str | None = None, status: str = "all") -> list[dict[str, object]]:
    """The JSON export parsed."""
    with app.app_context():
        text = "".join(export.json_chunks(filtered(q, status)))
    parsed = json.loads(text)
    assert isinstance(parsed, list)
    return parsed


def test_csv_has_one_row_per_submission_with_every_field(
        app: Flask, make_submission: MakeSubmission, smtp_server: SMTPTestServer) -> None:
    """Header first; text with commas, quotes, new lines and CJK survives a csv round trip."""
    message = 'Line one, "quoted"\nLine two: 你好'
    first = make_submission(thank_you=True, email="ada@example.com", message=message,
                            attachment=PDF)
    make_submission(thank_you=True, email="grace@example.com", name="Grace Hopper")
    deliver_now(app)
    rows = csv_rows(app)
    assert set(REQUIRED) <= set(rows[0])
    assert len(rows) == 2
    ada = next(row for row in rows if row["id"] == first)
    assert (ada["email"], ada["message"], ada["recipient"]) == (
        "ada@example.com", message, "Sales")
    assert (ada["files"], ada["status"]) == (f"report.pdf ({len(PDF)} bytes)", "sent")
    assert ada["form"] == "contact"
    assert ada["created_at"].endswith("+00:00")


def test_json_is_an_array_of_objects_with_every_field(
        app: Flask, make_submission: MakeSubmission) -> None:
    """The JSON export parses to one object per submission, newest first."""
    older = make_submission(thank_you=True, email="ada@example.com")
    newer = make_submission(thank_you=True, email="grace@example.com", attachment=PDF)
    rows = json_rows(app)
    assert [row["id"] for row in rows] == [newer, older]
    assert set(REQUIRED) <= set(rows[0])
    assert rows[0]["files"] == [{"field": "attachment", "name": "report.pdf",
                                 "content_type": "application/pdf", "size": len(PDF),
                                 "stored": True}]
    assert rows[1]["files"] == []
    assert {row["status"] for row in rows} == {"queued"}


def test_an_empty_export_still_parses(app: Flask) -> None:
    """No submission: a header alone, and an empty JSON array."""
    assert csv_rows(app) == []
    assert json_rows(app) == []


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x.example\")", "+1+2", "-2+3",
                                  "@SUM(A1:A2)", "\tTab first", "\rCR first"])
def test_csv_cells_a_spreadsheet_would_run_are_prefixed(
        app: Flask, make_submission: MakeSubmission, text: str) -> None:
    """A cell that begins with = + - @ tab or CR starts with ' in the CSV, as is in JSON."""
    make_submission(thank_you=True, email="ada@example.com", message=text)
    [row] = csv_rows(app)
    assert row["message"] == f"'{text}"
    assert json_rows(app)[0]["message"] == text


@pytest.mark.parametrize("text", ["Plain words", "a=b", "1+1", "email me@example.com"])
def test_csv_cells_that_are_not_formulas_are_kept(
        app: Flask, make_submission: MakeSubmission, text: str) -> None:
    """Only the first character counts."""
    make_submission(thank_you=True, email="ada@example.com", message=text)
    assert csv_rows(app)[0]["message"] == text


def test_the_search_filter_applies(app: Flask, make_submission: MakeSubmission) -> None:
    """`q` narrows the export as it narrows the archive."""
    make_submission(thank_you=True, email="ada@example.com", subject="Engines")
    make_submission(thank_you=True, email="grace@example.com", subject="Compilers")
    assert [row["email"] for row in csv_rows(app, q="compil")] == ["grace@example.com"]
    assert [row["subject"] for row in json_rows(app, q="ADA@")] == ["Engines"]


@pytest.mark.parametrize("status, expected", [
    ("all", {"ham-sent", "ham-queued"}),
    ("spam", {"spam"}),
    ("delivered", {"ham-sent"}),
    ("pending", {"ham-queued"}),
])
def test_the_status_filter_applies(
        app: Flask, make_submission: MakeSubmission, smtp_server: SMTPTestServer,
        status: str, expected: set[str]) -> None:
    """`status` narrows the export; each row says its owner mail's state or spam."""
    make_submission(thank_you=True, email="ada@example.com", subject="ham-sent")
    deliver_now(app)
    make_submission(thank_you=True, email="grace@example.com", subject="ham-queued")
    make_submission(email="bot@example.com", subject="spam", verdict="spam")
    rows = csv_rows(app, status=status)
    assert {row["subject"] for row in rows} == expected
    states = {row["subject"]: row["status"] for row in rows}
    assert states.get("ham-sent", "sent") == "sent" and states.get("spam", "spam") == "spam"
    assert states.get("ham-queued", "queued") == "queued"


def test_export_is_streamed_in_pages(app: Flask) -> None:
    """More rows than a page: several chunks, each row once, even at the same timestamp."""
    count = 2 * export.PAGE_ROWS + 7
    insert_submissions(app, count)  # one created_at for all: the pages go by id as well
    with app.app_context():
        chunks = list(export.csv_chunks(filtered()))
        json_chunks = list(export.json_chunks(filtered()))
    assert len(chunks) == 3 and len(json_chunks) == 4  # JSON closes with its own chunk
    rows = list(csv.DictReader(io.StringIO("".join(chunks), newline="")))
    assert len(rows) == count == len({row["id"] for row in rows})
    assert len(json.loads("".join(json_chunks))) == count


def test_export_reads_the_database_only_while_iterated(
        app: Flask, make_submission: MakeSubmission) -> None:
    """The chunks are a lazy iterator: rows stored after it was made still appear."""
    with app.app_context():
        chunks = export.csv_chunks(filtered())
    assert isinstance(chunks, Iterator)
    make_submission(thank_you=True, email="ada@example.com")
    response = Response(chunks, mimetype="text/csv")  # outside any app context
    assert response.is_streamed
    assert "ada@example.com" in response.get_data(as_text=True)


@pytest.mark.parametrize("form", ["csv", "json"])
def test_export_command_applies_the_filters(
        app: Flask, make_submission: MakeSubmission, form: str) -> None:
    """`flask submissions export --format csv|json --q --status` prints the filtered export."""
    make_submission(thank_you=True, email="ada@example.com", subject="Engines")
    make_submission(thank_you=True, email="grace@example.com", subject="Compilers")
    make_submission(email="bot@example.com", subject="Spam offer", verdict="spam")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["submissions", "export", "--format", form, "--q", "engines"])
    assert result.exit_code == 0, result.output
    assert "ada@example.com" in result.output and "grace@" not in result.output
    spam = runner.invoke(args=["submissions", "export", "--format", form, "--status", "spam"])
    assert "bot@example.com" in spam.output and "ada@" not in spam.output


def test_export_command_email_filter_in_csv(app: Flask, make_submission: MakeSubmission) -> None:
    """`--email` in CSV lists that visitor's submissions, spam included."""
    make_submission(thank_you=True, email="ada@example.com")
    make_submission(email="Ada@Example.com", verdict="spam")
    make_submission(thank_you=True, email="grace@example.com")
    result = app.test_cli_runner().invoke(
        args=["submissions", "export", "--email", "ADA@example.com"])
    rows = list(csv.DictReader(io.StringIO(result.output, newline="")))
    assert sorted(row["status"] for row in rows) == ["queued", "spam"]


def test_list_command_shows_newest_first(app: Flask, make_submission: MakeSubmission) -> None:
    """`flask submissions list` prints one line per submission, newest first, up to --limit."""
    make_submission(thank_you=True, email="ada@example.com", subject="older")
    newest = make_submission(thank_you=True, email="grace@example.com", subject="newer")
    result = app.test_cli_runner().invoke(args=["submissions", "list", "--limit", "1"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [result.output.splitlines()[0]]
    assert result.output.startswith(newest) and "newer" in result.output
