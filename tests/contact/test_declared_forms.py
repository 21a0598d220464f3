"""Forms declared in a file, end to end: the pages, a submission of each form delivered to the
real test SMTP server, the stored record, the console and the export; a file that changes
later; and the built-in form when there is no file."""

from __future__ import annotations

import csv
import hashlib
import io
import re
from collections.abc import Callable, Sequence
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from contact_site.extensions import db
from contact_site.forms import declaration_of
from contact_site.submissions.answers import answers_of
from contact_site.submissions.models import Submission
from support.admin import owner_client
from support.files import PDF, PNG
from support.forms_files import (
    COMPANY_FIELD,
    PRIVACY,
    SITE_FORMS,
    field_names,
    hidden_fields,
    post_declared,
    site_forms,
    write_forms,
)
from support.outbox import deliver_everything
from support.processes import PROJECT_ROOT
from support.smtp_server import SMTPTestServer

BUILT_IN = ["recipient", "name", "email", "subject", "message", "attachment"]
VERSION = re.compile(r"[0-9a-f]{64}")
VISITOR = "grace@example.com"

CONTACT = {"recipient": "support-team", "name": "Grace Hopper", "email": VISITOR,
           "phone": "+1 (555) 010-0199", "topic": "help", "callback": "y", "privacy": "y",
           "message": "Hello,\nthe compiler needs a look.\n\nGrace"}
# The contact form's fields in the owner's mail: (label, value as shown), in order.
CONTACT_SHOWN = [("Who to write to", "Support Team"), ("Full name", "Grace Hopper"),
                 ("Email", VISITOR), ("Phone", "+1 (555) 010-0199"), ("Topic", "Getting help"),
                 ("Call me back", "Yes"), ("Privacy", "Yes"), ("Message", "Hello,\n")]

CAREERS = {"name": "Grace Hopper", "email": VISITOR,
           "portfolio": "https://grace.example.com/work", "years": "12", "start": "2026-09-01",
           "privacy": "y"}
# Two files for the `cv` field: (bytes, name as sent, content type stored).
CV_FILES = [(PDF + b"% curriculum vitae\n", "cv.pdf", "application/pdf"),
            (PNG + bytes(range(256)), "portrait.png", "image/png")]


def declared_app(make_app: Callable[..., Flask], tmp_path: Path, text: str = SITE_FORMS,
                 **settings: Any) -> Flask:
    """An app (no delivery thread: the test delivers) serving the forms of `text`, from a
    folder of its own."""
    path = write_forms(tmp_path / f"site-{len(list(tmp_path.glob('site-*')))}", text)
    return make_app(deliver=False, CONTACT_FORMS_FILE=str(path), **settings)


def page_of(client: FlaskClient, path: str, language: str = "en") -> str:
    """The page at `path`, after checking it answered 200."""
    response = client.get(path, headers={"Accept-Language": language})
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def submit(client: FlaskClient, path: str, fields: dict[str, str],
           files: Sequence[tuple[str, bytes, str]] = (), language: str = "en") -> str:
    """Post a form as a JSON client; the accepted submission's id."""
    response = post_declared(client, path, fields, files=files, language=language)
    assert response.status_code == 202, response.get_json()
    return str(response.get_json()["id"])


def stored(app: Flask, submission_id: str) -> Submission:
    """The stored submission with its files, detached."""
    with app.app_context():
        submission = db.session.get(Submission, submission_id)
        assert submission is not None
        list(submission.files)  # loaded before the session closes
        db.session.expunge_all()
        return submission


def mail_to(server: SMTPTestServer, address: str) -> EmailMessage:
    """The one mail the server received for `address`."""
    found = [mail.message for mail in server.messages if address in mail.rcpt_tos]
    assert len(found) == 1, [mail.rcpt_tos for mail in server.messages]
    return found[0]


def plain_text(message: EmailMessage) -> str:
    """The mail's text part, its line breaks as in Python."""
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    return str(body.get_content()).replace("\r\n", "\n")


def attachments(message: EmailMessage) -> list[tuple[str | None, str, Any]]:
    """(file name, content type, bytes) of each attachment, in order."""
    return [(part.get_filename(), part.get_content_type(), part.get_payload(decode=True))
            for part in message.iter_attachments()]


def assert_in_order(text: str, pieces: Sequence[str]) -> None:
    """Each piece is found in `text` after the one before it."""
    position = 0
    for piece in pieces:
        found = text.find(piece, position)
        assert found >= 0, f"{piece!r} not found after position {position} of:\n{text}"
        position = found + len(piece)


def labelled(shown: Sequence[tuple[str, str]]) -> list[str]:
    """The owner's mail's pieces for (label, value) pairs: each label, then its value."""
    return [piece for label, value in shown for piece in (f"{label}:", value)]


def answer_entry(submission: Submission, name: str) -> dict[str, Any]:
    """The stored answer of one field, as the row holds it."""
    return dict(next(e for e in submission.answers or [] if e["name"] == name))


def csv_rows(client: FlaskClient, **query: str) -> tuple[list[str], list[dict[str, str]]]:
    """The console's CSV export: its header and rows."""
    response = client.get("/admin/export.csv", query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    reader = csv.DictReader(io.StringIO(response.get_data(as_text=True)))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


@pytest.mark.parametrize(("recipients", "fields"), [
    ("Sales <sales@example.com>, Support Team <support@example.com>", BUILT_IN),
    ("Sales <sales@example.com>", BUILT_IN[1:]),
], ids=["several recipients", "one recipient"])
def test_without_a_forms_file_the_built_in_form_is_served_unchanged(
        make_app: Callable[..., Flask], recipients: str, fields: list[str]) -> None:
    """No CONTACT_FORMS_FILE: / and /f/contact show today's fields, the recipient's choice
    only where there is a choice."""
    client = make_app(deliver=False, CONTACT_RECIPIENTS=recipients).test_client()
    assert field_names(page_of(client, "/")) == fields
    assert field_names(page_of(client, "/f/contact")) == fields


@pytest.mark.parametrize("with_file", [False, True], ids=["built-in form", "forms file"])
def test_a_slug_no_form_has_is_404(make_app: Callable[..., Flask], tmp_path: Path,
                                   with_file: bool) -> None:
    """GET and POST /f/unknown: 404, whether or not a forms file is given."""
    app = declared_app(make_app, tmp_path) if with_file else make_app(deliver=False)
    client = app.test_client()
    assert client.get("/f/unknown").status_code == 404
    tokens = hidden_fields(client, "/")
    response = client.post("/f/unknown", data={**tokens, "email": VISITOR},
                           headers={"Accept": "application/json"})
    assert response.status_code == 404


def test_each_declared_form_has_its_fields_in_order(
        make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """/ is the first form; /f/<slug> each form; labels and the consent's text in the page's
    language."""
    client = declared_app(make_app, tmp_path).test_client()
    contact = ["recipient", "name", "email", "phone", "topic", "callback", "privacy", "message"]
    assert field_names(page_of(client, "/")) == contact
    assert field_names(page_of(client, "/f/contact")) == contact
    careers = page_of(client, "/f/careers", "zh")
    assert field_names(careers) == ["name", "email", "portfolio", "years", "start", "privacy",
                                    "cv"]
    for words in ("求职申请", "作品集", "工作年限", "最早入职日期", PRIVACY["zh"], "简历和求职信"):
        assert words in careers
    assert PRIVACY["en"] not in careers


@pytest.mark.each_database
def test_a_contact_message_reaches_the_owner_with_every_field(
        make_app: Callable[..., Flask], tmp_path: Path, database_url: str,
        smtp_server: SMTPTestServer) -> None:
    """The owner's mail lists every field with its label, in the file's order, Reply-To the
    visitor; the visitor is thanked with the PDF; the row keeps the form, its version and
    the consent's exact text."""
    app = declared_app(make_app, tmp_path, DATABASE_URL=database_url)
    submission_id = submit(app.test_client(), "/", CONTACT)
    deliver_everything(app)

    owner = mail_to(smtp_server, "support@example.com")
    assert owner["Subject"] == "[Contact] Contact us"
    assert [a.addr_spec for a in owner["Reply-To"].addresses] == [VISITOR]
    text = plain_text(owner)
    assert_in_order(text, labelled(CONTACT_SHOWN))
    assert f"“{PRIVACY['en']}”" in text
    assert CONTACT["message"] in text
    assert attachments(owner) == []

    thanks = mail_to(smtp_server, VISITOR)
    assert [a.addr_spec for a in thanks["To"].addresses] == [VISITOR]
    pdf = (PROJECT_ROOT / "static" / "thank-you.pdf").read_bytes()
    assert attachments(thanks) == [("thank-you.pdf", "application/pdf", pdf)]

    submission = stored(app, submission_id)
    version = declaration_of(app).forms[0].version
    assert (submission.form_slug, submission.form_version) == ("contact", version)
    assert VERSION.fullmatch(version)
    consent = answer_entry(submission, "privacy")
    assert consent["value"] is True
    assert (consent["text"], consent["language"]) == (PRIVACY["en"], "en")
    assert consent["sha256"] == hashlib.sha256(PRIVACY["en"].encode()).hexdigest()


@pytest.mark.each_database
@pytest.mark.parametrize("language", ["en", "zh"])
def test_a_job_application_brings_both_files_and_the_consent_as_shown(
        make_app: Callable[..., Flask], tmp_path: Path, database_url: str,
        smtp_server: SMTPTestServer, language: str) -> None:
    """Two files in one field reach the owner byte for byte; the consent is stored in the
    language the visitor read it in; the thank-you carries no PDF (thank_you_pdf = false)."""
    app = declared_app(make_app, tmp_path, DATABASE_URL=database_url)
    files = [("cv", data, name) for data, name, _type in CV_FILES]
    submission_id = submit(app.test_client(), "/f/careers", CAREERS, files, language)
    deliver_everything(app)

    owner = mail_to(smtp_server, "hiring@example.com")
    assert owner["Subject"] == "[Contact] Job application"
    assert [a.addr_spec for a in owner["Reply-To"].addresses] == [VISITOR]
    text = plain_text(owner)  # in the owner's language, whatever the visitor's
    assert_in_order(text, [*labelled([
        ("Full name", "Grace Hopper"), ("Email", VISITOR),
        ("Portfolio", "https://grace.example.com/work"), ("Years of experience", "12"),
        ("Earliest start", "2026-09-01"), ("Privacy", "Yes"), ("CV and letter", "cv.pdf"),
    ]), "portrait.png"])
    assert f"“{PRIVACY[language]}”" in text
    assert attachments(owner) == [(name, kind, data) for data, name, kind in CV_FILES]

    thanks = mail_to(smtp_server, VISITOR)
    assert [a.addr_spec for a in thanks["To"].addresses] == [VISITOR]
    assert attachments(thanks) == []

    submission = stored(app, submission_id)
    careers = declaration_of(app).form("careers")
    assert careers is not None
    assert (submission.form_slug, submission.form_version) == ("careers", careers.version)
    assert VERSION.fullmatch(careers.version)
    assert submission.language == language
    consent = answer_entry(submission, "privacy")
    assert (consent["text"], consent["language"]) == (PRIVACY[language], language)
    assert consent["sha256"] == hashlib.sha256(PRIVACY[language].encode()).hexdigest()
    values = {answer.name: answer.value for answer in answers_of(submission)}
    assert (values["years"], values["start"]) == (12, "2026-09-01")
    assert values["cv"] == ["cv.pdf", "portrait.png"]


@pytest.mark.each_database
def test_a_field_added_to_the_file_is_on_the_page_in_the_mail_console_and_export(
        make_app: Callable[..., Flask], tmp_path: Path, database_url: str,
        smtp_server: SMTPTestServer) -> None:
    """One field added to the contact form and the app started again: the page asks it, the
    owner's mail, the console's detail and the export by form show it; the other form's
    version is unchanged."""
    before = declared_app(make_app, tmp_path, DATABASE_URL=database_url)
    assert "company" not in field_names(page_of(before.test_client(), "/"))
    after = declared_app(make_app, tmp_path, site_forms(extra=COMPANY_FIELD),
                         DATABASE_URL=database_url)
    page = page_of(after.test_client(), "/")
    assert field_names(page).index("company") == field_names(page).index("privacy") + 1
    assert '<label for="company">Company' in page

    submission_id = submit(after.test_client(), "/", {**CONTACT, "company": "Remington Rand"})
    deliver_everything(after)
    text = plain_text(mail_to(smtp_server, "support@example.com"))
    assert_in_order(text, labelled([*CONTACT_SHOWN[:-1], ("Company", "Remington Rand"),
                                    CONTACT_SHOWN[-1]]))

    versions = [{form.slug: form.version for form in declaration_of(app).forms}
                for app in (before, after)]
    assert versions[0]["contact"] != versions[1]["contact"]
    assert versions[0]["careers"] == versions[1]["careers"]

    console = owner_client(after)
    detail = page_of(console, f"/admin/submissions/{submission_id}")
    assert_in_order(detail, ["<dt>Privacy</dt>", "<dt>Company</dt>", "Remington Rand",
                             "<dt>Message</dt>"])
    header, rows = csv_rows(console, form="contact")
    assert header == ["id", "created_at", "recipient", "name", "email", "phone", "topic",
                      "callback", "privacy", "company", "message", "status", "state"]
    assert [(row["id"], row["company"]) for row in rows] == [(submission_id, "Remington Rand")]


@pytest.mark.each_database
def test_a_submission_keeps_its_labels_when_the_file_relabels_a_field(
        make_app: Callable[..., Flask], tmp_path: Path, database_url: str,
        smtp_server: SMTPTestServer) -> None:
    """Sent while the phone was labelled "Phone", delivered and read after it became
    "Mobile number": the stored answers, the mail and the console say "Phone"."""
    before = declared_app(make_app, tmp_path, DATABASE_URL=database_url)
    submission_id = submit(before.test_client(), "/", CONTACT)
    relabelled = site_forms(phone_label='{ en = "Mobile number", zh = "手机号码" }')
    after = declared_app(make_app, tmp_path, relabelled, DATABASE_URL=database_url)
    assert "Mobile number" in page_of(after.test_client(), "/")

    phone = answer_entry(stored(after, submission_id), "phone")
    assert phone["label"] == {"en": "Phone", "zh": "电话"}
    assert phone["value"] == CONTACT["phone"]

    deliver_everything(after)
    text = plain_text(mail_to(smtp_server, "support@example.com"))
    assert_in_order(text, labelled(CONTACT_SHOWN))
    assert "Mobile number" not in text

    detail = page_of(owner_client(after), f"/admin/submissions/{submission_id}")
    assert_in_order(detail, ["<dt>Phone</dt>", CONTACT["phone"]])
    assert "Mobile number" not in detail
