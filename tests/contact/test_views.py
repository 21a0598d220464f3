"""The contact flow end to end: the form, its answers, and the two mails received."""

from __future__ import annotations

import io
import re
import time
from email.utils import parsedate_to_datetime

import pytest
from sqlalchemy import func, select

from contact_site.delivery.backend import backend_of
from contact_site.delivery.models import OutboxMail
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.forms import VALID, form_tokens, post_form

PDF_BYTES = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def counts(app) -> tuple[int, int]:
    """(submissions, outbox rows) stored."""
    with app.app_context():
        return (db.session.scalar(select(func.count()).select_from(Submission)),
                db.session.scalar(select(func.count()).select_from(OutboxMail)))


def by_recipient(mails):
    """Received mails keyed by their single envelope recipient."""
    return {m.rcpt_tos[0]: m for m in mails}


def test_page_offers_the_recipients_by_name(client):
    page = client.get("/").get_data(as_text=True)
    assert '<option value="sales">Sales</option>' in page
    assert '<option value="support-team">Support Team</option>' in page
    assert "sales@example.com" not in page


def test_valid_submission_delivers_both_mails(app, client, smtp_server):
    """One POST: 303 to /thanks, then the owner's mail and the visitor's thank-you arrive."""
    upload = "Résumé – 2026 naïve.pdf"
    response = post_form(client, subject="Engines <script>alert(1)</script>",
                         message="Hello <script>alert('x')</script>\nsecond line",
                         attachment=(io.BytesIO(PDF_BYTES), upload))
    assert response.status_code == 303
    assert response.headers["Location"].endswith("/thanks")

    mails = by_recipient(smtp_server.wait_for(2))
    owner, visitor = mails["sales@example.com"], mails["ada@example.com"]

    msg = owner.message
    assert owner.mail_from == "noreply@example.org"
    assert msg["To"] == "Sales <sales@example.com>"
    assert msg["Reply-To"] == "Ada Lovelace <ada@example.com>"
    assert msg["Subject"] == "[Contact] Engines <script>alert(1)</script>"
    text = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "Hello <script>alert('x')</script>" in text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in html
    assert "<script>" not in html
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == upload
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_payload(decode=True) == PDF_BYTES
    assert "filename*=utf-8''" in attachment.as_string().replace("\r\n ", "").lower()

    thanks = visitor.message
    assert thanks["To"] == "ada@example.com"
    assert thanks["Subject"] == "Thank you for your message"
    assert thanks["Reply-To"] is None
    [pdf] = list(thanks.iter_attachments())
    assert pdf.get_content_type() == "application/pdf"
    assert pdf.get_filename() == "thank-you.pdf"
    assert pdf.get_payload(decode=True).startswith(b"%PDF-")
    for visitor_text in ("Ada", "Lovelace", "Engines", "analytical", "script", "Résumé"):
        assert visitor_text not in visitor.data.decode("utf-8", "replace")
        assert visitor_text not in thanks.get_body(("plain",)).get_content()

    for mail in (owner, visitor):
        assert re.fullmatch(r"<[^<>@\s]+@example\.org>", mail.message["Message-ID"])
        assert parsedate_to_datetime(mail.message["Date"]) is not None
        assert b"\n" not in mail.data.replace(b"\r\n", b""), "bare LF in the SMTP data"
        assert max(len(line) for line in mail.data.split(b"\r\n")) <= 998


def test_message_ids_are_the_ones_stored_at_enqueue(app, client, smtp_server):
    assert post_form(client).status_code == 303
    received = {m.message["Message-ID"] for m in smtp_server.wait_for(2)}
    with app.app_context():
        stored = set(db.session.scalars(select(OutboxMail.message_id)))
    assert received == stored and len(stored) == 2


def test_json_submission_answers_202_with_the_id(app, client, smtp_server):
    response = post_form(client, json=True)
    assert response.status_code == 202
    body = response.get_json()
    assert body["status"] == "queued"
    with app.app_context():
        assert db.session.get(Submission, body["id"]) is not None
    smtp_server.wait_for(2)


@pytest.mark.settings(CONTACT_RECIPIENTS="Owner <owner@example.net>")
def test_single_recipient_may_be_omitted(app, smtp_server):
    client = app.test_client()
    assert post_form(client, recipient=None).status_code == 303
    assert "owner@example.net" in by_recipient(smtp_server.wait_for(2))


def test_long_message_line_is_carried_intact(client, smtp_server):
    long_line = "word " * 1900
    assert post_form(client, message=long_line).status_code == 303
    owner = by_recipient(smtp_server.wait_for(2))["sales@example.com"]
    assert owner.message.get_body(("plain",)).get_content().replace("\r\n", "\n").count(
        long_line.strip()) == 1


def test_double_submit_with_the_same_key_stores_and_sends_once(app, client, smtp_server):
    tokens = form_tokens(client)
    first = post_form(client, json=True, tokens=tokens)
    second = post_form(client, json=True, tokens=tokens)
    assert first.status_code == second.status_code == 202
    assert first.get_json() == second.get_json()
    assert post_form(client, tokens=tokens).status_code == 303
    smtp_server.wait_for(2)
    time.sleep(1.5)  # a duplicate would be sent by the worker's next poll
    assert len(smtp_server.messages) == 2
    assert counts(app) == (1, 2)


INVALID = [
    ("email", "", "Enter your email address."),
    ("email", "not-an-address", "Enter a valid email address."),
    ("email", "a@b@example.com", "Enter a valid email address."),
    ("email", "x" * 250 + "@example.com", "at most 254 characters"),
    ("subject", "", "Enter a subject."),
    ("subject", "s" * 201, "Use at most 200 characters."),
    ("subject", "Hi\r\nBcc: victim@example.com", "single line"),
    ("subject", "Hi\u2028there", "single line"),
    ("message", "", "Enter your message."),
    ("message", "m" * 10001, "Use at most 10,000 characters."),
    ("name", "n" * 101, "Use at most 100 characters."),
    ("name", "Eve\nBcc: x@example.com", "single line"),
    ("recipient", "ceo", "Choose who to write to."),
    ("recipient", "", "Choose who to write to."),
]


@pytest.mark.parametrize(("field", "value", "words"), INVALID)
def test_invalid_field_answers_422_json(app, client, smtp_server, field, value, words):
    response = post_form(client, json=True, **{field: value})
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert list(errors) == [field]
    assert words in " ".join(errors[field])
    assert counts(app) == (0, 0)


@pytest.mark.parametrize(("field", "value", "words"), INVALID[:3] + INVALID[8:9])
def test_invalid_field_answers_422_html_with_inputs_kept(app, client, field, value, words):
    response = post_form(client, **{field: value})
    page = response.get_data(as_text=True)
    assert response.status_code == 422
    assert words in page
    assert f'id="{field}-error"' in page
    kept = {k: v for k, v in VALID.items() if k not in (field, "recipient", "message")}
    for kept_value in kept.values():
        assert f'value="{kept_value}"' in page
    assert counts(app) == (0, 0)


UPLOADS = [
    ("empty.pdf", b"", "The file is empty."),
    ("tool.exe", b"MZ\x90\x00" + b"\x00" * 100, "Files of this type are not accepted."),
    ("fake.pdf", b"MZ\x90\x00" + b"\x00" * 100, "content is not a .pdf file"),
    ("picture.png", PDF_BYTES, "content is not a .png file"),
    ("noext", b"hello", "Files of this type are not accepted."),
]


@pytest.mark.parametrize(("filename", "content", "words"), UPLOADS)
def test_refused_upload_answers_422_and_keeps_nothing(app, client, tmp_path, filename, content,
                                                      words):
    response = post_form(client, json=True, attachment=(io.BytesIO(content), filename))
    assert response.status_code == 422
    assert words in response.get_json()["errors"]["attachment"][0]
    assert counts(app) == (0, 0)
    uploads = tmp_path / "uploads"
    assert not uploads.exists() or not any(uploads.iterdir())


def test_accepted_upload_is_stored_under_a_generated_name(app, client, tmp_path):
    response = post_form(client, json=True, attachment=(io.BytesIO(PDF_BYTES), "../../etc/x.pdf"))
    assert response.status_code == 202
    sid = response.get_json()["id"]
    stored = list((tmp_path / "uploads" / sid).iterdir())
    assert [p.name for p in stored] == ["attachment.pdf"]
    assert stored[0].read_bytes() == PDF_BYTES
    with app.app_context():
        [file] = db.session.get(Submission, sid).files
        stored_as = ("attachment", "x.pdf", f"{sid}/attachment.pdf")
        assert (file.field, file.name, file.path) == stored_as


@pytest.mark.settings(CONTACT_MAX_UPLOAD_MB=1)
@pytest.mark.parametrize("json", [False, True])
def test_file_over_the_limit_answers_413_naming_it(app, tmp_path, json):
    client = app.test_client()
    big = PDF_BYTES + b"0" * (2 * 2**20)
    response = post_form(client, json=json, attachment=(io.BytesIO(big), "big.pdf"))
    assert response.status_code == 413
    assert "limit of 1 MB" in response.get_data(as_text=True)
    assert counts(app) == (0, 0)


@pytest.mark.settings(CONTACT_MAX_UPLOAD_MB=1)
def test_file_just_over_the_limit_inside_the_body_room_answers_413(app):
    client = app.test_client()
    response = post_form(client, json=True,
                         attachment=(io.BytesIO(PDF_BYTES + b"0" * 2**20), "big.pdf"))
    assert response.status_code == 413
    assert "limit of 1 MB" in response.get_json()["errors"]["attachment"][0]
    assert counts(app) == (0, 0)


@pytest.mark.parametrize("json", [False, True])
def test_missing_csrf_token_answers_400(app, client, json):
    tokens = form_tokens(client)
    response = post_form(client, json=json, tokens={"csrf_token": "forged",
                                                    "submission_key": tokens["submission_key"]})
    assert response.status_code == 400
    if json:
        assert "csrf_token" in response.get_json()["errors"]
    else:
        assert "security token" in response.get_data(as_text=True)
    assert counts(app) == (0, 0)


@pytest.mark.parametrize("json", [False, True])
def test_honeypot_looks_like_success_and_sends_nothing(app, client, smtp_server, json):
    response = post_form(client, json=json, website="http://spam.example.com")
    assert response.status_code == (202 if json else 303)
    with app.app_context():
        [stored] = db.session.scalars(select(Submission)).all()
        assert stored.verdict == "spam"
    assert counts(app) == (1, 0)
    time.sleep(1.5)
    assert smtp_server.messages == []


@pytest.mark.settings(MAIL_TIMEOUT=10)
def test_post_answers_at_once_while_the_smtp_server_is_slow(client, smtp_server):
    smtp_server.mode, smtp_server.delay = "delay", 3.0
    started = time.monotonic()
    response = post_form(client)
    elapsed = time.monotonic() - started
    assert response.status_code == 303
    assert elapsed < 1.0, f"the POST took {elapsed:.2f}s: mail was sent inside the request"
    assert len(smtp_server.wait_for(2, timeout=15)) == 2


def test_mails_arrive_once_the_smtp_server_is_back(app, client, smtp_server):
    smtp_server.mode = "down"
    assert post_form(client).status_code == 303
    time.sleep(2.5)  # the worker tries and fails at least once
    with app.app_context():
        rows = db.session.scalars(select(OutboxMail)).all()
        assert all(r.status in {"queued", "sending"} for r in rows)
        assert any(r.attempts >= 1 and r.last_error for r in rows)
    smtp_server.mode = "accept"
    mails = smtp_server.wait_for(2, timeout=20)
    assert {m.rcpt_tos[0] for m in mails} == {"sales@example.com", "ada@example.com"}


def test_healthz_reports_outbox_counts(client, smtp_server):
    post_form(client)
    smtp_server.wait_for(2)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        body = client.get("/healthz").get_json()
        if body["outbox"]["sent"] == 2:
            break
        time.sleep(0.1)
    none = {"queued": 0, "sending": 0, "sent": 0, "failed": 0}
    assert body == {"status": "ok", "outbox": {**none, "sent": 2}, "mails": {**none, "sent": 2},
                    "webhooks": none, "smtp": {"error": None, "since": None},
                    "verdicts": {"ham": 1, "suspect": 0, "spam": 0}}


def test_healthz_answers_503_when_the_database_is_gone(make_app, tmp_path):
    folder = tmp_path / "db"
    folder.mkdir()
    app = make_app(DATABASE_URL=f"sqlite:///{folder / 'x.sqlite'}", deliver=False)
    client = app.test_client()
    assert client.get("/healthz").status_code == 200
    backend_of(app).stop()
    with app.app_context():
        db.engine.dispose()
    folder.rename(tmp_path / "moved")
    folder.write_text("not a directory")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["status"] == "error"


def test_thanks_page(client):
    response = client.get("/thanks")
    assert response.status_code == 200
    assert "Thank you" in response.get_data(as_text=True)


def test_unknown_page_answers_404_in_the_clients_format(client):
    assert client.get("/nope", headers={"Accept": "application/json"}).get_json() == {
        "error": "The requested URL was not found on the server. If you entered the URL "
                 "manually please check your spelling and try again."}
    assert client.get("/nope").status_code == 404


@pytest.mark.settings(CONTACT_THANK_YOU_PER_DAY=1)
def test_thank_you_cap_counts_an_address_whatever_its_case(client, smtp_server):
    assert post_form(client, email="Ada@example.com").status_code == 303
    assert post_form(client, email="ada@example.com").status_code == 303
    mails = smtp_server.wait_for(3)
    time.sleep(1.5)  # a fourth mail would be sent by the worker's next poll
    assert sorted(m.rcpt_tos[0].lower() for m in smtp_server.messages) == [
        "ada@example.com", "sales@example.com", "sales@example.com"]
    assert len(mails) == 3
