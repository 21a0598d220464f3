"""What each format sends: the standard event's shape and values, Slack's and ntfy's notices."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from email.header import decode_header, make_header
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from contact_site.extensions import db
from contact_site.submissions.models import Submission
from contact_site.webhooks.payload import created_body, failed_body, iso_utc

pytestmark = pytest.mark.manual_delivery

CV = b"%PDF-1.4\n% a CV, never sent itself\n%%EOF\n"
LETTER = b"Dear team,\nI would like to join.\n"
CAREERS_VALUES = {"name": "Zoë Li", "email": "zoe@example.com",
                  "portfolio": "https://zoe.example.net/work", "years": 7,
                  "start": "2026-09-01", "privacy": True}
FILES = [("cv", "cv.pdf", CV), ("cv", "letter.txt", LETTER)]
BASE_URL = "https://contact.example.com/"


def stored(app: Flask, submission_id: str) -> Submission:
    """The stored submission (call inside an app context)."""
    submission = db.session.get(Submission, submission_id)
    assert submission is not None
    return submission


def created(app: Flask, submission_id: str, format: Any = "standard") -> Any:
    """The body each format sends for the submission: JSON parsed, or (text, headers)."""
    with app.app_context():
        body = created_body(format, stored(app, submission_id))
    if format == "ntfy":
        return body.content.decode(), body.headers
    assert body.headers == {"Content-Type": "application/json"}
    return json.loads(body.content)


def test_the_standard_event_carries_every_declared_field_and_the_files_metadata(
        forms_file, app, store_declared):
    """submission.created: id, form, time, verdict, language, the fields in form order with
    their stored values, and each file's metadata with the SHA-256 of its bytes."""
    submission_id = store_declared("careers", CAREERS_VALUES, files=FILES)
    event = created(app, submission_id)
    with app.app_context():
        created_at = stored(app, submission_id).created_at
    assert event["type"] == "submission.created"
    assert event["timestamp"] == event["data"]["created_at"] == iso_utc(created_at)
    assert event["data"]["created_at"].endswith("Z")
    data = event["data"]
    assert {k: data[k] for k in ("id", "form", "verdict", "language")} == {
        "id": submission_id, "form": "careers", "verdict": "ham", "language": "en"}
    assert data["fields"] == {**CAREERS_VALUES, "cv": ["cv.pdf", "letter.txt"]}
    assert list(data["fields"]) == ["name", "email", "portfolio", "years", "start", "privacy",
                                    "cv"]
    assert data["files"] == [
        {"field": "cv", "name": "cv.pdf", "content_type": "application/pdf",
         "size": len(CV), "sha256": hashlib.sha256(CV).hexdigest()},
        {"field": "cv", "name": "letter.txt", "content_type": "text/plain",
         "size": len(LETTER), "sha256": hashlib.sha256(LETTER).hexdigest()},
    ]


def test_file_contents_are_never_sent(forms_file, app, store_declared):
    """Neither the bytes nor their base64 appear in the body: metadata only."""
    submission_id = store_declared("careers", CAREERS_VALUES, files=FILES)
    with app.app_context():
        body = created_body("standard", stored(app, submission_id)).content
    for data in (CV, LETTER):
        assert data not in body
        assert base64.b64encode(data) not in body
    assert b"a CV, never sent" not in body


def test_a_deleted_file_keeps_its_metadata_without_a_hash(forms_file, app, store_declared):
    """A file removed by retention (no path) or gone from disk is listed with sha256 null."""
    submission_id = store_declared("careers", CAREERS_VALUES, files=FILES)
    with app.app_context():
        submission = stored(app, submission_id)
        first, second = submission.files
        (Path(app.config["UPLOAD_FOLDER"]) / str(second.path)).unlink()
        first.path = None
        db.session.commit()
    files = created(app, submission_id)["data"]["files"]
    assert [(f["name"], f["size"], f["sha256"]) for f in files] == [
        ("cv.pdf", len(CV), None), ("letter.txt", len(LETTER), None)]


def test_a_path_outside_the_upload_folder_is_never_read(forms_file, app, store_declared,
                                                        tmp_path):
    """A stored path that leads out of UPLOAD_FOLDER is not hashed (nor opened)."""
    secret = tmp_path / "outside.txt"
    secret.write_bytes(b"not an upload")
    submission_id = store_declared("careers", CAREERS_VALUES, files=FILES[:1])
    with app.app_context():
        stored(app, submission_id).files[0].path = "../outside.txt"
        db.session.commit()
    assert created(app, submission_id)["data"]["files"][0]["sha256"] is None


def test_the_built_in_form_sends_its_columns_as_fields(app, make_submission):
    """A submission of the built-in form: recipient, name, email, subject, message."""
    submission_id = make_submission(subject="Engines", message="Hello")
    fields = created(app, submission_id)["data"]["fields"]
    assert fields == {"recipient": "Sales", "name": "Ada Lovelace", "email": "ada@example.com",
                      "subject": "Engines", "message": "Hello", "attachment": []}


def test_delivery_failed_names_the_submission_the_kind_and_the_reason(app, make_submission):
    """delivery.failed: {type, timestamp, data: {submission, kind, reason}}."""
    submission_id = make_submission()
    at = datetime(2026, 5, 1, 10, 30, tzinfo=UTC)
    with app.app_context():
        body = failed_body("standard", stored(app, submission_id), "recipient",
                           "550 5.7.1 Rejected by policy", at)
    assert json.loads(body.content) == {
        "type": "delivery.failed", "timestamp": "2026-05-01T10:30:00Z",
        "data": {"submission": submission_id, "kind": "recipient",
                 "reason": "550 5.7.1 Rejected by policy"}}


@pytest.mark.settings(CONTACT_BASE_URL=BASE_URL)
def test_slack_names_the_form_the_visitor_the_subject_and_links_to_the_console(
        app, make_submission):
    """{"text": ...} with the form's title, the address, the subject and the detail's URL."""
    submission_id = make_submission(email="ada@example.com", subject="Engines")
    text = created(app, submission_id, "slack")["text"]
    assert text.splitlines() == [
        "*New message on Contact*", "From: ada@example.com", "Subject: Engines",
        f"https://contact.example.com/admin/submissions/{submission_id}"]


def test_slack_escapes_what_the_visitor_wrote(app, make_submission):
    """&, < and > become entities: no @channel, no forged link; no link without a base URL."""
    submission_id = make_submission(subject="<!channel> & <https://evil.example|click>")
    text = created(app, submission_id, "slack")["text"]
    assert "Subject: &lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in text
    assert "<" not in text and ">" not in text
    assert "/admin/submissions/" not in text


def test_slack_shows_a_mass_mention_without_obeying_it(app, make_submission):
    """@everyone, @here and @channel are shown with a word joiner after the @ (Discord's
    /slack address would ping on them); an address at channel.com is left as written."""
    submission_id = make_submission(subject="@everyone @Here @channel write to a@channel.com")
    text = created(app, submission_id, "slack")["text"]
    assert ("Subject: @\u2060everyone @\u2060Here @\u2060channel write to a@channel.com"
            in text)


@pytest.mark.settings(CONTACT_BASE_URL=BASE_URL)
def test_ntfy_is_plain_text_with_a_title(app, make_submission):
    """ntfy: the lines as plain text (nothing escaped for Slack), Title and Click headers."""
    submission_id = make_submission(subject="Fish & <chips>")
    text, headers = created(app, submission_id, "ntfy")
    assert text == "From: ada@example.com\nSubject: Fish & <chips>"
    assert headers == {"Content-Type": "text/plain; charset=utf-8",
                       "Title": "New message on Contact",
                       "Click": f"https://contact.example.com/admin/submissions/{submission_id}"}


@pytest.mark.settings(CONTACT_OWNER_LANGUAGE="zh")
def test_ntfy_titles_in_other_scripts_are_encoded_for_the_header(forms_file, app,
                                                                  store_declared):
    """The owner's language gives the form's title; non-ASCII goes as an RFC 2047 word."""
    submission_id = store_declared("careers", CAREERS_VALUES)
    text, headers = created(app, submission_id, "ntfy")
    assert headers["Title"].isascii()
    assert "求职申请" in str(make_header(decode_header(headers["Title"])))
    assert "zoe@example.com" in text
    assert "Engines" not in text  # the careers form asks no subject


def test_a_form_without_subject_sends_none(forms_file, app, store_declared):
    """Slack shows no Subject line for a form that does not ask one."""
    submission_id = store_declared("careers", CAREERS_VALUES)
    lines = created(app, submission_id, "slack")["text"].splitlines()
    assert lines == ["*New message on Job application*", "From: zoe@example.com"]


@pytest.mark.settings(CONTACT_BASE_URL=BASE_URL)
def test_a_failed_delivery_notice_says_which_and_why(app, make_submission):
    """Slack and ntfy tell the owner which delivery failed and the server's reason, escaped."""
    submission_id = make_submission()
    at = datetime(2026, 5, 1, tzinfo=UTC)
    with app.app_context():
        submission = stored(app, submission_id)
        slack = json.loads(failed_body("slack", submission, "recipient",
                                       "550 <ada@example.com>: no\x1b[2J", at).content)
        ntfy = failed_body("ntfy", submission, "thank_you", "timed out", at)
    assert slack["text"].splitlines() == [
        "*Delivery failed on Contact*", "The owner’s mail could not be delivered.",
        "Reason: 550 &lt;ada@example.com&gt;: no\\x1b[2J",
        f"https://contact.example.com/admin/submissions/{submission_id}"]
    assert ntfy.content.decode() == ("The thank-you mail could not be delivered.\n"
                                     "Reason: timed out")
    assert ntfy.headers["Title"] == "Delivery failed on Contact"
    assert ntfy.headers["Priority"] == "high"
