"""A catalogue of attacks on the public form: each gets its answer and harms no one.

Every row is posted to a fresh app whose mails really go to the test SMTP server.
Whatever the answer, nothing may be stored, kept on disk or mailed beyond what the
row allows: a refused post leaves no row, no file and no mail; an accepted one mails
only the configured recipient and the validated visitor, with one Subject, no Bcc,
From the site's sender, and a thank-you that carries no text the visitor typed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import getaddresses
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import encode_multipart

from contact_site.delivery.compose import THANK_YOU_SUBJECT
from contact_site.delivery.models import OutboxMail
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.files import EXE, HTML, PDF, PNG, SVG, ZIP, files_beside_uploads, kept_uploads
from support.forms import VALID, form_tokens
from support.outbox import deliver_everything

SENDER = "noreply@example.org"
OWNER = "sales@example.com"
VISITOR = "ada@example.com"
VICTIM = "victim@example.com"
MIB = 2**20
UPLOAD_LIMIT_MB = 1  # small, so the oversize rows stay fast

REFUSED, SPAM, ACCEPTED = "refused", "spam", "accepted"


class UnreadableBody(io.BytesIO):
    """A request body that fails the test if the server reads any of it."""

    def read(self, size: int | None = -1) -> bytes:
        raise AssertionError("the server read a body it should have refused by its length")

    readinto = readline = read  # type: ignore[assignment]


@dataclass(frozen=True)
class Attack:
    """One hostile post: what is sent, the answer, and what may come of it."""

    fields: dict[str, Any] = field(default_factory=dict)
    files: tuple[tuple[str, str, bytes], ...] = ()
    status: int = 422
    outcome: str = REFUSED
    visitor: str = VISITOR  # the validated address a thank-you may go to
    kept_files: int = 0
    raw: Callable[[dict[str, str]], dict[str, Any]] | None = None  # a hand-built request

    def request(self, tokens: dict[str, str]) -> dict[str, Any]:
        """The keyword arguments of client.post for this attack."""
        if self.raw is not None:
            return self.raw(tokens)
        fields = {**VALID, **tokens, **self.fields}
        parts = MultiDict([(k, v) for k, v in fields.items() if not isinstance(v, list | None)])
        parts.update(MultiDict([(k, item) for k, v in fields.items() if isinstance(v, list)
                                for item in v]))
        for name, filename, content in self.files:
            parts.add(name, FileStorage(io.BytesIO(content), filename, name))
        # Encoded here, in memory: the test client would spool a large body to a
        # temporary file it never closes when the app refuses the body unread.
        boundary, body = encode_multipart(parts)
        return {"data": body, "content_type": f"multipart/form-data; boundary={boundary}",
                "headers": {"Accept": "text/html"}}


def upload(filename: str, content: bytes, **kwargs: Any) -> Attack:
    """An attack through the attachment field."""
    return Attack(files=(("attachment", filename, content),), **kwargs)


def accepted(**kwargs: Any) -> Attack:
    """A post that is a valid message after all: mailed, but only where it may go."""
    return Attack(status=303, outcome=ACCEPTED, **kwargs)


def tampered(token: str) -> str:
    return token[:-2] + ("AA" if not token.endswith("AA") else "BB")


def huge_declared_length(tokens: dict[str, str]) -> dict[str, Any]:
    return {"input_stream": UnreadableBody(), "content_type": "multipart/form-data; boundary=x",
            "environ_overrides": {"CONTENT_LENGTH": str(10 * 2**30)}}


def endless_chunked_body(tokens: dict[str, str]) -> dict[str, Any]:
    """No Content-Length (as with chunked encoding): the limit applies while reading."""
    boundary = "limit"
    head = "".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
                   for k, v in {**VALID, **tokens}.items())
    body = (f'{head}--{boundary}\r\nContent-Disposition: form-data; name="attachment"; '
            f'filename="big.pdf"\r\n\r\n').encode() + PDF + b"\0" * (3 * MIB)
    return {"input_stream": io.BytesIO(body), "content_type": f"multipart/form-data; boundary="
            f"{boundary}", "environ_overrides": {"wsgi.input_terminated": True}}


def json_body(tokens: dict[str, str]) -> dict[str, Any]:
    return {"json": {**VALID, **tokens}, "headers": {"Accept": "application/json"}}


def json_body_with_csrf_header(**fields: Any) -> Callable[[dict[str, str]], dict[str, Any]]:
    """A JSON body (whose values need not be text) that passes CSRF by its header."""
    def build(tokens: dict[str, str]) -> dict[str, Any]:
        return {"json": {**VALID, **tokens, **fields},
                "headers": {"X-CSRFToken": tokens["csrf_token"], "Accept": "application/json"}}
    return build


ATTACKS: dict[str, Attack] = {
    # Header injection through every single-line field (README, "Security").
    "subject CRLF Bcc": Attack({"subject": f"Hi\r\nBcc: {VICTIM}"}),
    "subject LF Bcc": Attack({"subject": f"Hi\nBcc: {VICTIM}"}),
    "subject CR Bcc": Attack({"subject": f"Hi\rBcc: {VICTIM}"}),
    "subject folded line": Attack({"subject": f"Hi\r\n Bcc: {VICTIM}"}),
    "subject trailing CRLF": Attack({"subject": "Hi\r\n"}),
    "subject leading LF header": Attack({"subject": f"\nBcc: {VICTIM}"}),
    "subject NUL": Attack({"subject": "Hi\x00Bcc"}),
    "subject U+0085 NEL": Attack({"subject": f"Hi\u0085Bcc: {VICTIM}"}),
    "subject U+2028 line separator": Attack({"subject": f"Hi\u2028Bcc: {VICTIM}"}),
    "subject U+2029 paragraph separator": Attack({"subject": f"Hi\u2029Bcc: {VICTIM}"}),
    "subject vertical tab": Attack({"subject": "Hi\x0bthere"}),
    "subject terminal escape": Attack({"subject": "\x1b[2J\x1b[31mURGENT"}),
    "subject too long": Attack({"subject": "s" * 201}),
    "subject encoded-word smuggling": accepted(
        fields={"subject": "=?utf-8?q?Hi=0D=0ABcc:_victim@example.com?="}),
    "name CRLF Bcc": Attack({"name": f"Eve\r\nBcc: {VICTIM}"}),
    "name NUL": Attack({"name": "Eve\x00"}),
    "name U+2028": Attack({"name": f"Eve\u2028Bcc: {VICTIM}"}),
    "name address list trick": accepted(fields={"name": f'Eve" <{VICTIM}>, "x'}),
    "email CRLF Bcc": Attack({"email": f"{VISITOR}\r\nBcc: {VICTIM}"}),
    "email NUL": Attack({"email": f"{VISITOR}\x00"}),
    "email U+2028": Attack({"email": f"{VISITOR}\u2028"}),
    "email comma list": Attack({"email": f"{VICTIM}, other@example.com"}),
    "email semicolon list": Attack({"email": f"{VICTIM};other@example.com"}),
    "email display name with CRLF": Attack({"email": f'"x\r\nBcc: {VICTIM}" <{VISITOR}>'}),
    "email display name": Attack({"email": f"Eve <{VICTIM}>"}),
    "email quoted local part": Attack({"email": f'"{VICTIM}"@example.com'}),
    "email source route": Attack({"email": f"@evil.example.com:{VICTIM}"}),
    "email IP literal": Attack({"email": "ada@[192.0.2.1]"}),
    "email dotless domain": Attack({"email": "ada@localhost"}),
    "email special-use domain": Attack({"email": "ada@mail.internal.test"}),
    "email local part of 65": Attack({"email": "a" * 65 + "@example.com"}),
    "email of 255 characters": Attack({"email": "a@" + "b" * 63 + "." + "c" * 63 + "."
                                       + "d" * 63 + "." + "e" * 57 + ".com"}),
    "email non-ASCII local part (sent with SMTPUTF8)": accepted(
        fields={"email": "üser@example.com"}, visitor="üser@example.com"),
    "email IDN domain sent as punycode": accepted(fields={"email": "ada@bücher.de"},
                                                  visitor="ada@xn--bcher-kva.de"),
    "recipient path traversal": Attack({"recipient": "../admin"}),
    "recipient as an address": Attack({"recipient": VICTIM}),
    "recipient CRLF": Attack({"recipient": f"sales\r\nBcc: {VICTIM}"}),
    "recipient missing among two": Attack({"recipient": None}),
    "recipient posted twice": accepted(fields={"recipient": ["sales", VICTIM]}),
    # Not a relay: extra fields, SMTP smuggling, spam for a stranger.
    "extra to/cc/bcc/reply_to fields": accepted(fields={
        "to": VICTIM, "cc": VICTIM, "bcc": VICTIM, "reply_to": VICTIM, "from": VICTIM,
        "sender": VICTIM, "recipients": VICTIM, "headers": f"Bcc: {VICTIM}"}),
    "message SMTP smuggling CRLF.CRLF": accepted(fields={"message": (
        f"Hi\r\n.\r\nMAIL FROM:<{VICTIM}>\r\nRCPT TO:<{VICTIM}>\r\nDATA\r\nSpam\r\n.\r\n")}),
    "message SMTP smuggling LF.LF": accepted(fields={"message": (
        f"Hi\n.\nMAIL FROM:<{VICTIM}>\nRCPT TO:<{VICTIM}>\nDATA\nSpam\n.\n")}),
    "message SMTP smuggling bare CR": accepted(fields={"message": (
        f"Hi\r.\rMAIL FROM:<{VICTIM}>\rRCPT TO:<{VICTIM}>\rDATA\rSpam\r.\r")}),
    "message starting with headers": accepted(fields={
        "message": f"Bcc: {VICTIM}\r\nContent-Type: text/html\r\n\r\n<b>hi</b>"}),
    "message NUL": Attack({"message": "Hi\x00there"}),
    "message too long": Attack({"message": "m" * 10001}),
    "thank-you as a spam carrier": accepted(visitor=VICTIM, fields={
        "email": VICTIM, "name": "Cheap pills at https://spam.example.com",
        "subject": "Cheap pills at https://spam.example.com", "message": "Buy now: spam"}),
    # Spam: the honeypot keeps a record and sends nothing.
    "honeypot filled": Attack({"website": "https://spam.example.com"}, status=303, outcome=SPAM),
    "honeypot with header injection": Attack(
        {"website": "x", "subject": f"Hi\r\nBcc: {VICTIM}", "email": f"{VICTIM}, x@y.z"},
        status=303, outcome=SPAM),
    "honeypot with NUL everywhere": Attack(
        {"website": "\x00", "name": "\x00" * 200, "subject": "s\x00" * 300,
         "message": "\x00" * 20000, "email": "\x00@x", "submission_key": "k\x00" * 20},
        status=303, outcome=SPAM),
    # CSRF and the submission key.
    "csrf token missing": Attack({"csrf_token": None}, status=400),
    "csrf token wrong": Attack({"csrf_token": "forged"}, status=400),
    "csrf token tampered": Attack(raw=lambda t: Attack(
        {"csrf_token": tampered(t["csrf_token"])}).request(t), status=400),
    "JSON body without csrf header": Attack(raw=json_body, status=400),
    "JSON body with csrf header": Attack(raw=json_body_with_csrf_header()),
    "JSON body with a number subject": Attack(raw=json_body_with_csrf_header(subject=5)),
    "JSON body with an object message": Attack(raw=json_body_with_csrf_header(
        message={"Bcc": VICTIM})),
    "JSON body with a list of emails": Attack(raw=json_body_with_csrf_header(
        email=[VISITOR, VICTIM])),
    "submission key path traversal": Attack({"submission_key": "../../../../etc/passwd"}),
    "submission key too long": Attack({"submission_key": "k" * 65}),
    # Uploads (OWASP File Upload Cheat Sheet).
    "upload exe named .pdf": upload("evil.pdf", EXE),
    "upload RTL override exe": upload("invoice\u202egpj.exe", EXE),
    "upload RTL override hiding .pdf": upload("invoice\u202efdp.exe", PDF),
    "upload exe": upload("setup.exe", EXE),
    "upload double extension exe": upload("report.pdf.exe", EXE),
    "upload html": upload("page.html", HTML),
    "upload svg": upload("logo.svg", SVG),
    "upload svg named .png": upload("logo.png", SVG),
    "upload html named .txt": upload("notes.txt", HTML),
    "upload html comment named .txt": upload("notes.txt", b"<!-- x --><script>alert(1)</script>"),
    "upload xml named .txt": upload("notes.txt", b'<?xml version="1.0"?><svg/>'),
    "upload php named .jpg": upload("photo.jpg", b"<?php system($_GET['c']); ?>"),
    "upload png named .jpg": upload("photo.jpg", PNG),
    "upload zip named .docx": upload("letter.docx", ZIP),
    "upload binary named .txt": upload("notes.txt", b"text\x00\x01\x02binary"),
    "upload empty file": upload("empty.pdf", b""),
    "upload without extension": upload("README", b"hello"),
    "upload only a dot and extension": upload(".pdf", PDF),
    "upload path traversal name": upload("../../../../tmp/evil.pdf", PDF, status=303,
                                         outcome=ACCEPTED, kept_files=1),
    "upload Windows path name": upload("C:\\Users\\x\\..\\..\\evil.pdf", PDF, status=303,
                                       outcome=ACCEPTED, kept_files=1),
    "upload NUL in name": upload("evil.exe\x00.pdf", PDF, status=303, outcome=ACCEPTED,
                                 kept_files=1),
    "upload control characters in name": upload("inv\x1b[31moice\x07\x08\t.pdf", PDF,
                                                status=303, outcome=ACCEPTED, kept_files=1),
    "upload very long name": upload("a" * 1000 + ".pdf", PDF, status=303, outcome=ACCEPTED,
                                    kept_files=1),
    # A one-file field given two: refused whole, not quietly cut to its first file.
    "upload two files, second exe": Attack(
        files=(("attachment", "ok.pdf", PDF), ("attachment", "evil.exe", EXE))),
    "upload file as the message": Attack(
        {"message": None}, files=(("message", "message.txt", b"hello"),)),
    "upload file as the email": Attack(
        {"email": None}, files=(("email", "ada@example.com", b"x"),)),
    "upload file beside the subject": accepted(files=(("subject", "s.txt", b"Bcc: x@y.z"),)),
    "upload text in the attachment field": accepted(fields={"attachment": "C:\\evil.exe"}),
    # Bodies built to exhaust the parser: 413, without reading them into memory.
    "file just over the upload limit": upload("big.pdf", PDF + b"\0" * (UPLOAD_LIMIT_MB * MIB),
                                              status=413),
    "body over the request limit": upload("big.pdf", PDF + b"\0" * (3 * MIB), status=413),
    "1,001 multipart parts": Attack({f"part{i}": "x" for i in range(1001)}, status=413),
    "field over the form memory limit": Attack({"message": "m" * (200 * 1024)}, status=413),
    "10 GiB declared, never read": Attack(raw=huge_declared_length, status=413),
    "chunked body over the limit": Attack(raw=endless_chunked_body, status=413),
}


def rows(app: Flask) -> tuple[int, int, int]:
    """(real submissions, spam submissions, outbox mails) stored."""
    with app.app_context():
        count = select(func.count()).select_from(Submission)
        return (db.session.scalar(count.where(Submission.verdict != "spam")),
                db.session.scalar(count.where(Submission.verdict == "spam")),
                db.session.scalar(select(func.count()).select_from(OutboxMail)))


def visitor_text(attack: Attack) -> list[str]:
    """What the visitor typed that is long enough to recognise in a mail."""
    values = [attack.fields.get(k, VALID.get(k)) for k in ("name", "subject", "message")]
    return [v for v in values if isinstance(v, str) and len(v.strip()) >= 4]


def check_mails(mails: list[Any], attack: Attack) -> None:
    """Only the owner and the validated visitor receive mail, and each mail is well formed."""
    assert all(set(m.rcpt_tos) <= {OWNER, attack.visitor} for m in mails), [
        m.rcpt_tos for m in mails]
    owner = [m for m in mails if m.rcpt_tos == [OWNER]]
    thanks = [m for m in mails if m.rcpt_tos == [attack.visitor]]
    assert len(owner) == 1 and len(thanks) == 1 and len(mails) == 2
    for mail in mails:
        headers = mail.message
        assert mail.mail_from == SENDER
        assert len(headers.get_all("Subject")) == 1
        assert len(headers.get_all("To")) == 1 and len(headers.get_all("From")) == 1
        assert headers["Bcc"] is None and headers["Cc"] is None
        assert getaddresses(headers.get_all("From"))[0][1] == SENDER
    assert [a for _, a in getaddresses(owner[0].message.get_all("Reply-To"))] == [attack.visitor]
    thank_you = thanks[0].message
    assert thank_you["Subject"] == THANK_YOU_SUBJECT
    assert getaddresses(thank_you.get_all("To")) == [("", attack.visitor)]
    words = "\n".join(part.get_content() for part in thank_you.walk()
                      if part.get_content_maintype() == "text")
    for typed in visitor_text(attack):
        assert typed.strip() not in words and typed.strip() not in str(thank_you)


def check_kept_files(root: Path, count: int) -> None:
    """Attachments live only as <upload folder>/<submission id>/attachment.<ext>."""
    kept = kept_uploads(root)
    assert len(kept) == count
    for path in kept:
        parts = path.relative_to(root / "uploads").parts
        assert len(parts) == 2 and re.fullmatch(r"[0-9a-f]{32}", parts[0])
        assert re.fullmatch(r"attachment\.[a-z0-9]+", parts[1])


@pytest.mark.parametrize("attack", ATTACKS.values(), ids=ATTACKS.keys())
def test_attack_is_answered_and_harms_no_one(make_app, smtp_server, tmp_path, attack):
    check_attack(make_app(CONTACT_MAX_UPLOAD_MB=UPLOAD_LIMIT_MB, deliver=False),
                 smtp_server, tmp_path, attack)


# PostgreSQL refuses what SQLite stores (NUL in text, over-long strings): the rows
# that carry such input run there too.
ON_POSTGRESQL = {name: attack for name, attack in ATTACKS.items()
                 if re.search("NUL|honeypot|JSON|too long|key|control", name)}


@pytest.mark.postgres
@pytest.mark.parametrize("attack", ON_POSTGRESQL.values(), ids=ON_POSTGRESQL.keys())
def test_attack_on_postgresql(make_app, smtp_server, tmp_path, postgres_url, attack):
    app = make_app(CONTACT_MAX_UPLOAD_MB=UPLOAD_LIMIT_MB, deliver=False,
                   DATABASE_URL=postgres_url)
    check_attack(app, smtp_server, tmp_path, attack)


def check_attack(app: Flask, smtp_server: Any, tmp_path: Path, attack: Attack) -> None:
    """Post the attack, deliver what was queued, and check what must not have happened."""
    client = app.test_client()
    tokens = form_tokens(client)
    beside = files_beside_uploads(tmp_path)

    response = client.post("/", **attack.request(tokens))
    assert response.status_code == attack.status, response.get_data(as_text=True)[:2000]
    deliver_everything(app)

    assert files_beside_uploads(tmp_path) == beside, "a file was written outside the uploads"
    mails = list(smtp_server.messages)
    if attack.outcome == REFUSED:
        assert rows(app) == (0, 0, 0) and mails == [] and kept_uploads(tmp_path) == []
    elif attack.outcome == SPAM:
        assert rows(app) == (0, 1, 0) and mails == [] and kept_uploads(tmp_path) == []
    else:
        assert rows(app)[:2] == (1, 0)
        check_mails(mails, attack)
        check_kept_files(tmp_path, attack.kept_files)


def test_catalogue_holds_at_least_40_attacks():
    assert len(ATTACKS) >= 40
