"""Exports, the access export, retention and erasure of declared forms' submissions: a column
per field, every answer with its label, every file (docs/privacy.md)."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import func, select

from contact_site.contact.uploads import stored_bytes
from contact_site.extensions import db
from contact_site.forms import declaration_of
from contact_site.records import export, privacy
from contact_site.records.archive import filtered
from contact_site.records.retention import purge
from contact_site.submissions.models import SubmissionFile
from support.files import PDF, PNG
from support.forms_files import PRIVACY
from support.outbox import deliver_now
from support.records import owner_sent_at, submission, upload_folder
from support.smtp_server import SMTPTestServer

pytestmark = [pytest.mark.manual_delivery, pytest.mark.each_database,
              pytest.mark.usefixtures("forms_file")]

# The `store_declared` fixture (conftest.py): a declared form's submission stored; its id.
StoreDeclared = Callable[..., str]
CONTACT = {"recipient": "sales", "name": "Ada Lovelace", "email": "ada@example.com",
           "phone": "+44 20 7946 0000", "topic": "sales", "callback": False, "privacy": True,
           "company": "=HYPERLINK(\"http://x.example\")", "message": "Hello,\nan engine."}
CAREERS = {"name": "Grace Hopper", "email": "grace@example.com",
           "portfolio": "https://grace.example.com/work", "years": 12, "start": "2026-09-01",
           "privacy": True}
CV_FILES = [("cv", "cv.pdf", PDF + b"% curriculum vitae\n"), ("cv", "简历.png", PNG)]
CAREERS_COLUMNS = ["id", "created_at", "name", "email", "portfolio", "years", "start",
                   "privacy", "cv", "status", "state"]


def csv_text(app: Flask, slug: str | None = None) -> str:
    """The CSV export (of one form's submissions, a column per field, when given)."""
    with app.app_context():
        form = declaration_of(app).form(slug) if slug else None
        return "".join(export.csv_chunks(filtered(form=slug), form))


def csv_export(app: Flask, slug: str | None = None) -> list[list[str]]:
    """The CSV export's lines, parsed."""
    return list(csv.reader(io.StringIO(csv_text(app, slug), newline="")))


def json_export(app: Flask, slug: str | None = None) -> list[dict[str, object]]:
    """The JSON export, parsed."""
    with app.app_context():
        form = declaration_of(app).form(slug) if slug else None
        parsed = json.loads("".join(export.json_chunks(filtered(form=slug), form)))
    assert isinstance(parsed, list)
    return parsed


def stored_files(app: Flask, submission_id: str) -> list[tuple[str, str | None]]:
    """(name, path) of each file row of the submission, in order."""
    with app.app_context():
        return list(db.session.execute(
            select(SubmissionFile.name, SubmissionFile.path).where(
                SubmissionFile.submission_id == submission_id)
            .order_by(SubmissionFile.position)).tuples())


def test_the_export_of_one_form_has_a_column_per_field(
        app: Flask, store_declared: StoreDeclared) -> None:
    """CSV: the form's fields in order, headed by their names, values as text, the files'
    names joined by "; "; JSON: the same keys, values as stored; other forms left out."""
    careers = store_declared("careers", CAREERS, files=CV_FILES)
    store_declared("contact", CONTACT)
    [header, row] = csv_export(app, "careers")
    assert header == CAREERS_COLUMNS
    assert row[0] == careers and row[-2:] == ["queued", "new"]
    assert row[2:9] == ["Grace Hopper", "grace@example.com", "https://grace.example.com/work",
                        "12", "2026-09-01", "true", "cv.pdf; 简历.png"]
    [record] = json_export(app, "careers")
    assert list(record) == [*CAREERS_COLUMNS, "thread"]
    assert record["thread"] == {"replies": [], "notes": []}
    assert (record["years"], record["privacy"], record["cv"]) == (12, True, ["cv.pdf", "简历.png"])


def test_a_declared_value_a_spreadsheet_would_run_is_prefixed(
        app: Flask, store_declared: StoreDeclared) -> None:
    """A declared field's value starting with = is written with ' in the CSV, as is in JSON."""
    store_declared("contact", CONTACT)
    [header, row] = csv_export(app, "contact")
    assert row[header.index("company")] == "'=HYPERLINK(\"http://x.example\")"
    assert row[header.index("callback")] == "false"
    assert json_export(app, "contact")[0]["company"] == CONTACT["company"]


def test_the_export_of_every_form_adds_the_form_files_and_answers(
        app: Flask, store_declared: StoreDeclared) -> None:
    """Without a form: the usual columns, the form's slug, the files (name and size), and the
    other fields' answers as JSON with their labels."""
    careers = store_declared("careers", CAREERS, files=CV_FILES)
    [row] = list(csv.DictReader(io.StringIO(csv_text(app), newline="")))
    assert row["id"] == careers
    assert (row["form"], row["email"], row["name"]) == ("careers", "grace@example.com",
                                                        "Grace Hopper")
    sizes = [len(data) for _field, _name, data in CV_FILES]
    assert row["files"] == f"cv.pdf ({sizes[0]} bytes); 简历.png ({sizes[1]} bytes)"
    answers = {a["name"]: a for a in json.loads(row["answers"])}
    assert list(answers) == ["portfolio", "years", "start", "privacy", "cv"]
    assert answers["portfolio"]["label"] == {"en": "Portfolio", "zh": "作品集"}
    assert answers["privacy"]["text"] == PRIVACY["en"]
    [record] = json_export(app)
    files = record["files"]
    assert isinstance(files, list) and [f["name"] for f in files] == ["cv.pdf", "简历.png"]


def test_the_export_command_takes_a_form(app: Flask, store_declared: StoreDeclared) -> None:
    """`submissions export --form careers` has the careers form's columns; `list --form`
    lists its submissions only."""
    careers = store_declared("careers", CAREERS)
    contact = store_declared("contact", CONTACT)
    runner = app.test_cli_runner()
    result = runner.invoke(args=["submissions", "export", "--form", "careers"])
    assert result.exit_code == 0, result.output
    assert list(csv.reader(io.StringIO(result.output, newline="")))[0] == CAREERS_COLUMNS
    listed = runner.invoke(args=["submissions", "list", "--form", "careers"]).output
    assert careers in listed and contact not in listed


def test_the_access_export_holds_every_answer_and_file(
        app: Flask, store_declared: StoreDeclared) -> None:
    """Each submission of the address with its form, every field labelled in the visitor's
    language, the consent's text, language and SHA-256, and each file's name, type, size."""
    store_declared("careers", {**CAREERS, "email": "Grace@Example.com"}, files=CV_FILES,
                   language="zh")
    store_declared("contact", {**CONTACT, "email": "grace@example.com"})
    store_declared("careers", {**CAREERS, "email": "linus@example.com"})
    with app.app_context():
        document = privacy.visitor_export("grace@example.com")
    by_form = {s["form_slug"]: s for s in document["submissions"]}
    assert sorted(by_form) == ["careers", "contact"]
    careers = by_form["careers"]
    answers = {a["name"]: a for a in careers["answers"]}
    assert [(a["label"], a["value"]) for a in careers["answers"][:3]] == [
        ("姓名", "Grace Hopper"), ("电子邮箱", "Grace@Example.com"),
        ("作品集", "https://grace.example.com/work")]
    assert answers["privacy"] == {
        "name": "privacy", "type": "consent", "label": "隐私", "value": True,
        "text": PRIVACY["zh"], "language": "zh",
        "sha256": hashlib.sha256(PRIVACY["zh"].encode()).hexdigest()}
    assert answers["cv"]["value"] == ["cv.pdf", "简历.png"]
    assert careers["files"] == [
        {"field": "cv", "name": name, "content_type": kind, "size": len(data), "stored": True}
        for (_field, name, data), kind in zip(CV_FILES, ["application/pdf", "image/png"],
                                              strict=True)]
    assert "path" not in json.dumps(careers["files"]) and "linus" not in json.dumps(document)


def test_upload_retention_deletes_every_file_and_keeps_the_names(
        app: Flask, store_declared: StoreDeclared, smtp_server: SMTPTestServer) -> None:
    """30 days after the owner's mail went out, both files go: each row keeps its name,
    type and size, its path None; the quota's count drops by their bytes."""
    submission_id = store_declared("careers", CAREERS, files=CV_FILES)
    other = store_declared("careers", {**CAREERS, "email": "linus@example.com"},
                           files=[("cv", "linus.pdf", PDF)])
    while deliver_now(app):
        pass
    store_declared("careers", {**CAREERS, "email": "late@example.com"},
                   files=[("cv", "late.pdf", PDF)])  # its mail not sent: its file stays
    with app.app_context():
        assert stored_bytes() == sum(len(d) for _f, _n, d in CV_FILES) + 2 * len(PDF)
        result = purge(owner_sent_at(app, submission_id) + timedelta(days=31))
        assert stored_bytes() == len(PDF)
    assert result.uploads == 3 and result.submissions == 0
    assert not upload_folder(app, submission_id).exists()
    assert not upload_folder(app, other).exists()
    assert stored_files(app, submission_id) == [("cv.pdf", None), ("简历.png", None)]
    kept = submission(app, submission_id)
    assert kept is not None
    assert [(f.content_type, f.size) for f in kept.files] == [
        ("application/pdf", len(CV_FILES[0][2])), ("image/png", len(PNG))]


def test_erasure_deletes_every_file_of_every_submission(
        app: Flask, store_declared: StoreDeclared) -> None:
    """Erasing an address removes its submissions' files, two of one and one of another, and
    their rows; another visitor's file stays."""
    first = store_declared("careers", CAREERS, files=CV_FILES)
    second = store_declared("careers", {**CAREERS, "email": "GRACE@example.com"},
                            files=[("cv", "again.pdf", PDF)])
    other = store_declared("careers", {**CAREERS, "email": "linus@example.com"},
                           files=[("cv", "linus.pdf", PDF)])
    with app.app_context():
        erasure = privacy.erase_address("grace@example.com")
        remaining = db.session.scalar(select(func.count()).select_from(SubmissionFile))
        assert stored_bytes() == len(PDF)
    assert (erasure.submissions, erasure.files) == (2, 3)
    assert not upload_folder(app, first).exists() and not upload_folder(app, second).exists()
    assert remaining == 1 and stored_files(app, other) == [("linus.pdf", f"{other}/cv-0.pdf")]
    assert (upload_folder(app, other) / "cv-0.pdf").read_bytes() == PDF
