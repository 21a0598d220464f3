"""Property-based tests: whatever is posted in any field, the form is never turned into a relay.

For every input: the answer is never a 5xx; a refused or spam post sends nothing; a
received mail has exactly one Subject, no Bcc, and goes only to the recipient chosen
from the configuration or to the visitor's address as email-validator reads it.
"""

from __future__ import annotations

import io
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from email_validator import validate_email
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from support.files import EXE, HTML, PDF, PNG, SVG, files_beside_uploads
from support.forms import VALID, form_tokens
from support.outbox import deliver_everything

OWNERS = {"sales": "sales@example.com", "support-team": "support@example.com"}
VICTIM = "victim@example.com"
HAZARDS = ["\r", "\n", "\r\n", "\r\n ", "\x00", "\x0b", "\x1b", "\u0085", "\u2028", "\u2029",
           "\u202e", "\t", " ", ":", ",", ";", "<", ">", "@", '"', "\\", "=?utf-8?q?", "%0a",
           f"Bcc: {VICTIM}", f"\r\nBcc: {VICTIM}", f"To: {VICTIM}", "\r\n.\r\n"]
PROPERTY_SETTINGS = settings(max_examples=60, deadline=None, database=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                    HealthCheck.too_slow])

hazardous_text = st.lists(st.one_of(st.text(max_size=12), st.sampled_from(HAZARDS)),
                          max_size=8).map("".join)


def joined(*parts: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.tuples(*parts).map("".join)


def mostly(valid: Any, hostile: st.SearchStrategy[Any], odds: int = 4) -> st.SearchStrategy[Any]:
    """The valid value but one time in `odds`, so that many examples get as far as the mail."""
    return st.integers(1, odds).flatmap(lambda pick: hostile if pick == odds else st.just(valid))


recipients = st.one_of(st.sampled_from(list(OWNERS)), st.sampled_from(list(OWNERS)),
                       st.sampled_from(["", "Sales", "../admin", VICTIM]),
                       joined(st.sampled_from(list(OWNERS)), hazardous_text))
names = mostly(VALID["name"], st.one_of(hazardous_text, st.text(max_size=120)))
valid_emails = st.sampled_from(["ada@example.com", "bob.o'neil+tag@mail.example.org",
                                "Ada@Bücher.de", "x@sub.domain.example.net"])
emails = st.one_of(
    valid_emails, valid_emails, valid_emails, valid_emails,
    st.emails(),
    st.sampled_from(["ada@example.com", "Ada@Bücher.de", "üser@example.com", "a@[192.0.2.1]",
                     "a@localhost", f"{VICTIM}, ada@example.com", f"Eve <{VICTIM}>"]),
    joined(st.emails(), st.sampled_from(HAZARDS), st.emails()),
    hazardous_text,
)
subjects = mostly(VALID["subject"], st.one_of(
    hazardous_text, st.text(max_size=220),
    joined(st.text(max_size=20), st.sampled_from(HAZARDS), hazardous_text)))
messages = mostly(VALID["message"], st.one_of(hazardous_text, st.text(max_size=400)))
honeypots = mostly("", hazardous_text, odds=8)
extras = st.dictionaries(st.sampled_from(["to", "cc", "bcc", "reply_to", "from", "sender",
                                          "headers", "recipients"]),
                         st.one_of(st.emails(), hazardous_text), max_size=3)


def post(client: Any, tokens: dict[str, str], fields: dict[str, Any],
         files: list[tuple[str, bytes]] = ()) -> Any:
    """POST a multipart form with a fresh submission key, encoded in memory."""
    parts = MultiDict({**fields, **tokens, "submission_key": secrets.token_urlsafe(24)})
    for filename, content in files:
        parts.add("attachment", FileStorage(io.BytesIO(content), filename, "attachment"))
    boundary, body = encode_multipart(parts)
    return client.post("/", data=body, content_type=f"multipart/form-data; boundary={boundary}",
                       headers={"Accept": "application/json"})


def validated(address: str) -> str:
    """The visitor's address as the form must have read it (raises if it is not valid)."""
    result = validate_email(address.strip(" "), check_deliverability=False, allow_smtputf8=False,
                            allow_display_name=False, allow_domain_literal=False, strict=True)
    return result.ascii_email or result.normalized


def check_delivery(app: Any, smtp_server: Any, fields: dict[str, Any], status: int) -> None:
    """What reached the SMTP server after this post, against what the post allows."""
    deliver_everything(app)
    mails = list(smtp_server.messages)
    event(f"answer {status}, {'spam, ' if fields.get('website') else ''}{len(mails)} mail(s)")
    if status != 303 or fields.get("website"):
        assert mails == []
        return
    allowed = {OWNERS.get(fields["recipient"]), validated(fields["email"])}
    assert mails, "a valid post sent nothing"
    for mail in mails:
        assert set(mail.rcpt_tos) <= allowed, (mail.rcpt_tos, allowed)
        assert len(mail.message.get_all("Subject")) == 1
        assert mail.message.get_all("Bcc") is None and mail.message.get_all("Cc") is None


@pytest.mark.parametrize("database", ["sqlite", pytest.param("postgresql",
                                                              marks=pytest.mark.postgres)])
@PROPERTY_SETTINGS
@given(recipient=recipients, name=names, email=emails, subject=subjects, message=messages,
       website=honeypots, extra=extras)
def test_any_fields_answer_without_5xx_and_mail_only_the_allowed(
        request, make_app, smtp_server, database, recipient, name, email, subject, message,
        website, extra):
    on_postgresql = {"DATABASE_URL": request.getfixturevalue("postgres_url")} if (
        database == "postgresql") else {}
    app, client = app_and_client(make_app, **on_postgresql)
    fields = {**extra, "recipient": recipient, "name": name, "email": email,
              "subject": subject, "message": message, "website": website}
    smtp_server.clear()
    response = post(client, app.tokens, fields)
    assert response.status_code in {303, 202, 422}, response.get_data(as_text=True)[:500]
    if response.status_code == 422:
        event("refused: " + ", ".join(sorted(response.get_json()["errors"])))
    check_delivery(app, smtp_server, fields, 303 if response.status_code == 202 else 422)


filenames = st.one_of(
    st.text(max_size=40).map(lambda s: s + ".pdf"),
    joined(hazardous_text, st.sampled_from([".pdf", ".png", ".txt", ".exe", ".svg", ".html",
                                            ".pdf.exe", "", "."])),
    st.sampled_from(["../../x.pdf", "C:\\x\\y.pdf", "a\u202efdp.exe", "\x00.pdf", "/", ".."]),
)
contents = st.one_of(st.sampled_from([PDF, PNG, EXE, SVG, HTML, b"", b"plain text\n"]),
                     st.binary(max_size=200), st.text(max_size=100).map(str.encode))


@PROPERTY_SETTINGS
@given(filename=filenames, content=contents)
def test_any_upload_is_refused_or_kept_only_under_a_generated_name(
        make_app, smtp_server, tmp_path, filename, content):
    app, client = app_and_client(make_app)
    fields = {**VALID, "website": ""}
    smtp_server.clear()
    response = post(client, app.tokens, fields, [(filename, content)])
    assert response.status_code in {202, 422}, response.get_data(as_text=True)[:500]
    uploads = Path(app.config["UPLOAD_FOLDER"])
    for path in (p for p in uploads.rglob("*") if p.is_file()):
        relative = path.relative_to(uploads).parts
        assert len(relative) == 2 and re.fullmatch(r"attachment\.[a-z0-9]+", relative[1])
    assert files_beside_uploads(tmp_path) == app.beside_uploads
    check_delivery(app, smtp_server, fields, 303 if response.status_code == 202 else 422)


def app_and_client(make_app: Any, **config: Any) -> tuple[Any, Any]:
    """One app per test (Hypothesis runs many examples in it), with its form tokens."""
    app = getattr(make_app, "built", None)
    if app is None:
        app = make_app.built = make_app(deliver=False, **config)
        app.test = app.test_client()
        app.tokens = {"csrf_token": form_tokens(app.test)["csrf_token"]}
        app.beside_uploads = files_beside_uploads(Path(app.config["UPLOAD_FOLDER"]).parent)
    return app, app.test
