"""CSV and JSON exports (SPEC §9): every field, filters applied, formulas neutralised, streamed."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest
from delivery_helpers import deliver_now
from flask import Flask, Response
from records_helpers import PDF, bulk, store

from contact_site.records import export
from contact_site.records.archive import filtered
from smtp_server import SMTPTestServer

REQUIRED = ("id", "created_at", "name", "email", "recipient", "subject", "message",
            "attachment_name", "status")


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


def test_csv_has_one_row_per_submission_with_every_field(manual_app: Flask,
                                                         smtp_server: SMTPTestServer) -> None:
    """Header first; text with commas, quotes, new lines and CJK survives a csv round trip."""
    message = 'Line one, "quoted"\nLine two: 你好'
    first = store(manual_app, "ada@example.com", message=message, attachment=PDF)
    store(manual_app, "grace@example.com", name="Grace Hopper")
    deliver_now(manual_app)
    rows = csv_rows(manual_app)
    assert set(REQUIRED) <= set(rows[0])
    assert len(rows) == 2
    ada = next(row for row in rows if row["id"] == first)
    assert (ada["email"], ada["message"], ada["recipient"]) == (
        "ada@example.com", message, "Sales")
    assert (ada["attachment_name"], ada["status"]) == ("report.pdf", "sent")
    assert ada["created_at"].endswith("+00:00")


def test_json_is_an_array_of_objects_with_every_field(manual_app: Flask) -> None:
    """The JSON export parses to one object per submission, newest first."""
    older = store(manual_app, "ada@example.com")
    newer = store(manual_app, "grace@example.com", attachment=PDF)
    rows = json_rows(manual_app)
    assert [row["id"] for row in rows] == [newer, older]
    assert set(REQUIRED) <= set(rows[0])
    assert rows[0]["attachment_size"] == len(PDF) and rows[1]["attachment_name"] is None
    assert {row["status"] for row in rows} == {"queued"}


def test_an_empty_export_still_parses(manual_app: Flask) -> None:
    """No submission: a header alone, and an empty JSON array."""
    assert csv_rows(manual_app) == []
    assert json_rows(manual_app) == []


@pytest.mark.parametrize("text", ["=HYPERLINK(\"http://x.example\")", "+1+2", "-2+3",
                                  "@SUM(A1:A2)", "\tTab first", "\rCR first"])
def test_csv_cells_a_spreadsheet_would_run_are_prefixed(manual_app: Flask, text: str) -> None:
    """A cell that begins with = + - @ tab or CR starts with ' in the CSV, as is in JSON."""
    store(manual_app, "ada@example.com", message=text)
    [row] = csv_rows(manual_app)
    assert row["message"] == f"'{text}"
    assert json_rows(manual_app)[0]["message"] == text


@pytest.mark.parametrize("text", ["Plain words", "a=b", "1+1", "email me@example.com"])
def test_csv_cells_that_are_not_formulas_are_kept(manual_app: Flask, text: str) -> None:
    """Only the first character counts."""
    store(manual_app, "ada@example.com", message=text)
    assert csv_rows(manual_app)[0]["message"] == text


def test_the_search_filter_applies(manual_app: Flask) -> None:
    """`q` narrows the export as it narrows the archive."""
    store(manual_app, "ada@example.com", subject="Engines")
    store(manual_app, "grace@example.com", subject="Compilers")
    assert [row["email"] for row in csv_rows(manual_app, q="compil")] == ["grace@example.com"]
    assert [row["subject"] for row in json_rows(manual_app, q="ADA@")] == ["Engines"]


@pytest.mark.parametrize("status, expected", [
    ("all", {"ham-sent", "ham-queued"}),
    ("spam", {"spam"}),
    ("delivered", {"ham-sent"}),
    ("pending", {"ham-queued"}),
])
def test_the_status_filter_applies(manual_app: Flask, smtp_server: SMTPTestServer,
                                   status: str, expected: set[str]) -> None:
    """`status` narrows the export; each row says its owner mail's state or spam."""
    store(manual_app, "ada@example.com", subject="ham-sent")
    deliver_now(manual_app)
    store(manual_app, "grace@example.com", subject="ham-queued")
    store(manual_app, "bot@example.com", subject="spam", spam=True)
    rows = csv_rows(manual_app, status=status)
    assert {row["subject"] for row in rows} == expected
    states = {row["subject"]: row["status"] for row in rows}
    assert states.get("ham-sent", "sent") == "sent" and states.get("spam", "spam") == "spam"
    assert states.get("ham-queued", "queued") == "queued"


def test_export_is_streamed_in_pages(manual_app: Flask) -> None:
    """More rows than a page: several chunks, each row once, even at the same timestamp."""
    count = 2 * export.PAGE_ROWS + 7
    bulk(manual_app, count)  # one created_at for all: the pages go by id as well
    with manual_app.app_context():
        chunks = list(export.csv_chunks(filtered()))
        json_chunks = list(export.json_chunks(filtered()))
    assert len(chunks) == 3 and len(json_chunks) == 4  # JSON closes with its own chunk
    rows = list(csv.DictReader(io.StringIO("".join(chunks), newline="")))
    assert len(rows) == count == len({row["id"] for row in rows})
    assert len(json.loads("".join(json_chunks))) == count


def test_export_reads_the_database_only_while_iterated(manual_app: Flask) -> None:
    """The chunks are a lazy iterator: rows stored after it was made still appear."""
    with manual_app.app_context():
        chunks = export.csv_chunks(filtered())
    assert isinstance(chunks, Iterator)
    store(manual_app, "ada@example.com")
    response = Response(chunks, mimetype="text/csv")  # outside any app context
    assert response.is_streamed
    assert "ada@example.com" in response.get_data(as_text=True)


@pytest.mark.parametrize("form", ["csv", "json"])
def test_export_command_applies_the_filters(manual_app: Flask, form: str) -> None:
    """`flask submissions export --format csv|json --q --status` prints the filtered export."""
    store(manual_app, "ada@example.com", subject="Engines")
    store(manual_app, "grace@example.com", subject="Compilers")
    store(manual_app, "bot@example.com", subject="Spam offer", spam=True)
    runner = manual_app.test_cli_runner()
    result = runner.invoke(args=["submissions", "export", "--format", form, "--q", "engines"])
    assert result.exit_code == 0, result.output
    assert "ada@example.com" in result.output and "grace@" not in result.output
    spam = runner.invoke(args=["submissions", "export", "--format", form, "--status", "spam"])
    assert "bot@example.com" in spam.output and "ada@" not in spam.output


def test_export_command_email_filter_in_csv(manual_app: Flask) -> None:
    """`--email` in CSV lists that visitor's submissions, spam included."""
    store(manual_app, "ada@example.com")
    store(manual_app, "Ada@Example.com", spam=True)
    store(manual_app, "grace@example.com")
    result = manual_app.test_cli_runner().invoke(
        args=["submissions", "export", "--email", "ADA@example.com"])
    rows = list(csv.DictReader(io.StringIO(result.output, newline="")))
    assert sorted(row["status"] for row in rows) == ["queued", "spam"]


def test_list_command_shows_newest_first(manual_app: Flask) -> None:
    """`flask submissions list` prints one line per submission, newest first, up to --limit."""
    store(manual_app, "ada@example.com", subject="older")
    newest = store(manual_app, "grace@example.com", subject="newer")
    result = manual_app.test_cli_runner().invoke(args=["submissions", "list", "--limit", "1"])
    assert result.exit_code == 0
    assert result.output.splitlines() == [result.output.splitlines()[0]]
    assert result.output.startswith(newest) and "newer" in result.output
