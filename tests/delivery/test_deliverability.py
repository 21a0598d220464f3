"""Mail that filters trust: automatic mails say so, every mail has its text in HTML too, the
client greets with a name and logs in once, file names every reader can read, international
addresses with SMTPUTF8, a server's size limit honoured, and DKIM signatures.

Against the test SMTP server (aiosmtpd); the same mails against Postfix and SpamAssassin are
in test_real_mail_software.py.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import re
from collections.abc import Callable
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import dkim
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from flask import Flask

from contact_site.config import ConfigError
from contact_site.delivery.models import DeliveryAttempt, MailKind, OutboxMail, Status
from contact_site.delivery.smtp import NO_SMTPUTF8
from contact_site.extensions import db
from support.every_mail import every_kind_of_mail
from support.factories import create_submission
from support.outbox import deliver_now
from support.smtp_server import SMTPTestServer

SENDER_DOMAIN = "example.org"  # of MAIL_DEFAULT_SENDER in the test settings
INTERNATIONAL = "用户@例子.中国"
STORED_INTERNATIONAL = "用户@xn--fsqu00a.xn--fiqs8s"  # the domain kept in ASCII
AUTOMATIC = {MailKind.OWNER: None, MailKind.THANK_YOU: "auto-replied",
             MailKind.REPLY: None, MailKind.DIGEST: "auto-generated"}


def app_for(make_app: Callable[..., Flask], server: SMTPTestServer, language: str = "en",
            **settings: Any) -> Flask:
    """An app delivering by hand to `server`, the owner reading `language`."""
    return make_app(deliver=False, MAIL_PORT=server.port, CONTACT_OWNER_LANGUAGE=language,
                    **settings)


class _Words(HTMLParser):
    """The text of an HTML part, as a reader sees it."""

    def __init__(self) -> None:
        super().__init__()
        self.text: list[str] = []
        self._skip = False

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        self._skip = tag in {"title", "style"}

    def handle_endtag(self, tag: str) -> None:
        self._skip = False

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def words(text: str) -> list[str]:
    """The words of a text (runs of letters and digits), in order."""
    return re.findall(r"\w+", text)


def html_words(html: str) -> list[str]:
    """The words an HTML part shows."""
    parser = _Words()
    parser.feed(html)
    return words(" ".join(parser.text))


def part_text(message: EmailMessage, subtype: str) -> str:
    """The text of the mail's plain or HTML body."""
    body = message.get_body((subtype,))
    assert body is not None, f"no text/{subtype} part"
    return str(body.get_content())


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_kind_of_mail_has_the_headers_filters_trust(make_app, start_smtp, language) -> None:
    """The thank-you says it is an automatic answer, the digest that it is generated, the
    owner's mail and a reply nothing; every mail has a Message-ID on the sender's domain,
    Date, MIME-Version, and an HTML part with the words of its text part."""
    server = start_smtp()
    app = app_for(make_app, server, language)
    for kind, mail in every_kind_of_mail(app, server, language).items():
        message = mail.message
        assert message["Auto-Submitted"] == AUTOMATIC[MailKind(kind)], kind
        assert re.fullmatch(rf"<[^@<>\s]+@{re.escape(SENDER_DOMAIN)}>", message["Message-ID"])
        assert message["Date"] and message["MIME-Version"] == "1.0"
        text, html = part_text(message, "plain"), part_text(message, "html")
        assert words(text) == html_words(html), kind
        assert len(words(text)) > 3


def test_the_client_greets_with_the_senders_domain_or_mail_helo_name(make_app, start_smtp) -> None:
    """EHLO names the domain of MAIL_DEFAULT_SENDER, or MAIL_HELO_NAME when set; never an
    address literal such as [127.0.0.1]."""
    server = start_smtp()
    create_submission(app := app_for(make_app, server))
    deliver_now(app)
    assert [mail.helo for mail in server.wait_for(1)] == [SENDER_DOMAIN]
    named = app_for(make_app, server, MAIL_HELO_NAME="mail.example.org")
    create_submission(named)
    deliver_now(named)
    assert server.wait_for(2)[1].helo == "mail.example.org"


@pytest.mark.parametrize("value", ["[127.0.0.1]", "127.0.0.1", "mail example.org", "-bad-"])
def test_mail_helo_name_must_be_a_host_name(make_app, value) -> None:
    """An address literal or something that is no host name stops start-up, naming it."""
    with pytest.raises(ConfigError, match="MAIL_HELO_NAME"):
        make_app(deliver=False, MAIL_HELO_NAME=value)


def test_a_refused_password_is_tried_once_per_attempt(make_app, start_smtp) -> None:
    """One AUTH command per attempt, with the first mechanism offered of PLAIN and LOGIN:
    a wrong password counts once against the account, not once per mechanism."""
    server = start_smtp(auth=True, auth_cleartext=True)
    server.refuse_logins = True
    app = app_for(make_app, server, MAIL_USERNAME="site@example.org", MAIL_PASSWORD="wrong-pw-1")
    create_submission(app)
    deliver_now(app)
    assert len(server.auth_commands) == 1
    assert server.auth_commands[0].startswith("PLAIN ")
    with app.app_context():
        assert {row.status for row in db.session.scalars(db.select(OutboxMail))} == {
            Status.QUEUED}


def test_attachment_names_have_a_plain_ascii_filename_beside_the_encoded_one(
        make_app, start_smtp) -> None:
    """`报价申请.pdf` goes as filename*=utf-8''… (which readers that know RFC 2231 take) and
    as filename="attachment.pdf" for those that do not; an ASCII name goes as it is."""
    server = start_smtp()
    app = app_for(make_app, server)
    create_submission(app, attachment=b"%PDF-1.4 one", attachment_name="报价申请.pdf")
    create_submission(app, attachment=b"%PDF-1.4 two", attachment_name="quote request.pdf")
    deliver_now(app)
    dispositions = {}
    for mail in server.wait_for(2):
        [part] = mail.message.iter_attachments()
        raw = re.search(rb"Content-Disposition: attachment;.*?\r\n(?=\S)", mail.data, re.S)
        assert raw is not None
        dispositions[part.get_filename()] = b" ".join(raw.group(0).split())
    assert dispositions == {
        "报价申请.pdf": b"Content-Disposition: attachment; "
                      b"filename*=utf-8''%E6%8A%A5%E4%BB%B7%E7%94%B3%E8%AF%B7.pdf; "
                      b'filename="attachment.pdf"',
        "quote request.pdf": b'Content-Disposition: attachment; filename="quote request.pdf"'}


def test_an_international_address_is_mailed_with_smtputf8_when_offered(
        make_app, start_smtp) -> None:
    """用户@例子.中国 is accepted (its domain kept in ASCII); the thank-you and the reply go
    to it with SMTPUTF8, and the owner's mail names it in Reply-To, in UTF-8."""
    server = start_smtp()
    app = app_for(make_app, server)
    mails = every_kind_of_mail(app, server, "zh", email=STORED_INTERNATIONAL)
    for kind in (MailKind.THANK_YOU, MailKind.REPLY):
        assert mails[kind].rcpt_tos == [STORED_INTERNATIONAL]
        assert "SMTPUTF8" in mails[kind].mail_options
        assert as_utf8(mails[kind].data)["To"].addresses[0].addr_spec == STORED_INTERNATIONAL
    owner = mails[MailKind.OWNER]
    assert "SMTPUTF8" in owner.mail_options
    assert as_utf8(owner.data)["Reply-To"].addresses[0].addr_spec == STORED_INTERNATIONAL
    assert "SMTPUTF8" not in mails[MailKind.DIGEST].mail_options  # nothing international


def as_utf8(data: bytes) -> EmailMessage:
    """A mail sent with SMTPUTF8 as a reader of RFC 6532 reads it: headers in UTF-8."""
    message = email.parser.Parser(policy=email.policy.default).parsestr(data.decode("utf-8"))
    assert isinstance(message, EmailMessage)
    return message


def test_without_smtputf8_the_visitors_mails_fail_saying_why_and_the_owners_goes(
        make_app, start_smtp) -> None:
    """A server that does not offer SMTPUTF8: the thank-you and the reply fail at once with
    a plain reason; the owner's mail goes without Reply-To, the address in its text."""
    server = start_smtp(smtputf8=False)
    app = app_for(make_app, server)
    submission_id = create_submission(app, thank_you=True, email=STORED_INTERNATIONAL)
    deliver_now(app)
    [owner] = server.wait_for(1)
    assert owner.message["Reply-To"] is None and owner.mail_options == [
        option for option in owner.mail_options if option.startswith("SIZE=")]
    assert STORED_INTERNATIONAL in part_text(owner.message, "plain")
    assert f"To answer, write to {STORED_INTERNATIONAL}." in part_text(owner.message, "plain")
    with app.app_context():
        rows = {row.kind: row for row in db.session.scalars(db.select(OutboxMail).where(
            OutboxMail.submission_id == submission_id))}
    assert rows[MailKind.OWNER].status == Status.SENT
    assert rows[MailKind.THANK_YOU].status == Status.FAILED
    assert rows[MailKind.THANK_YOU].last_error == NO_SMTPUTF8


def big_pdf(size: int) -> bytes:
    """A PDF-looking file of `size` bytes."""
    return b"%PDF-1.4\n" + b"0" * (size - 9)


def attempt_notes(app: Flask, kind: MailKind) -> list[tuple[str, str]]:
    """The outcome and reply of each attempt of the mails of this kind."""
    with app.app_context():
        return [(attempt.outcome, attempt.reply or "") for attempt in db.session.scalars(
            db.select(DeliveryAttempt).join(OutboxMail).where(OutboxMail.kind == kind)
            .order_by(DeliveryAttempt.id))]


def test_a_mail_over_the_announced_size_is_never_sent_and_goes_again_without_its_files(
        make_app, start_smtp) -> None:
    """The server announces SIZE 100000: the owner's mail with a 200 kB file is not sent (no
    DATA); it goes at once without the file, saying so; the file stays stored."""
    server = start_smtp(size_limit=100_000)
    app = app_for(make_app, server)
    create_submission(app, attachment=big_pdf(200_000), attachment_name="plans.pdf")
    deliver_now(app)
    [mail] = server.wait_for(1)
    assert server.data_commands == 1 and len(mail.data) < 100_000
    assert list(mail.message.iter_attachments()) == []
    text = " ".join(part_text(mail.message, "plain").split())
    assert "plans.pdf" in text and "The files were left out of this mail" in text
    assert "larger than the 100000 bytes the server accepts" in text
    [(outcome, reply)] = attempt_notes(app, MailKind.OWNER)
    assert outcome == "sent" and "without its files" in reply
    assert any(Path(app.config["UPLOAD_FOLDER"]).rglob("attachment.pdf"))


def test_a_552_from_the_server_sends_the_owners_mail_again_without_its_files(
        make_app, start_smtp) -> None:
    """A server that refuses the data for its size (552 5.3.4) though it announced more:
    the same attempt sends the mail again without the files, saying so."""
    server = start_smtp()
    server.mode, server.fail_times = "552", 1
    app = app_for(make_app, server)
    create_submission(app, attachment=big_pdf(50_000), attachment_name="plans.pdf")
    deliver_now(app)
    [mail] = server.wait_for(1)
    assert server.data_commands == 2 and list(mail.message.iter_attachments()) == []
    assert "552 5.3.4 Message too big" in " ".join(part_text(mail.message, "plain").split())
    [(outcome, reply)] = attempt_notes(app, MailKind.OWNER)
    assert outcome == "sent" and "without its files: 552" in reply


def test_a_thank_you_refused_for_its_size_fails_naming_the_reason(make_app, start_smtp) -> None:
    """Only the owner's mail goes again without files: a thank-you whose PDF is too large
    for the server fails at once (a 5xx), with the reason."""
    server = start_smtp(size_limit=15_000)  # the Chinese PDF alone is 20 kB
    app = app_for(make_app, server)
    create_submission(app, thank_you=True, language="zh")
    deliver_now(app)
    with app.app_context():
        thank_you = db.session.scalars(db.select(OutboxMail).where(
            OutboxMail.kind == MailKind.THANK_YOU)).one()
    assert thank_you.status == Status.FAILED and "5.3.4" in (thank_you.last_error or "")


@pytest.fixture(scope="module")
def dkim_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A 2048-bit RSA key in a PEM file, and its public key as the DNS record gives it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("dkim") / "mail.pem"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    public = key.public_key().public_bytes(serialization.Encoding.DER,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return path, b"v=DKIM1; k=rsa; p=" + base64.b64encode(public)


def dkim_settings(path: Path) -> dict[str, str]:
    return {"DKIM_DOMAIN": SENDER_DOMAIN, "DKIM_SELECTOR": "mail2026",
            "DKIM_PRIVATE_KEY_FILE": str(path)}


@pytest.mark.parametrize("language", ["en", "zh"])
def test_every_mail_is_dkim_signed_and_verifies(make_app, start_smtp, dkim_key, language) -> None:
    """rsa-sha256, relaxed/relaxed, d= the domain, s= the selector, over From, To, Subject,
    Date, Message-ID, Reply-To and the MIME headers; dkimpy verifies each mail with the
    public key of the DNS record."""
    path, record = dkim_key
    server = start_smtp()
    app = app_for(make_app, server, language, **dkim_settings(path))

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail2026._domainkey.example.org."
        return record

    for kind, mail in every_kind_of_mail(app, server, language).items():
        assert dkim.verify(mail.data, dnsfunc=dns), kind
        tags = dict(tag.strip().split("=", 1) for tag in
                    " ".join(str(mail.message["DKIM-Signature"]).split()).split(";") if tag.strip())
        assert (tags["a"], tags["c"], tags["d"], tags["s"]) == (
            "rsa-sha256", "relaxed/relaxed", SENDER_DOMAIN, "mail2026")
        signed = set(tags["h"].replace(" ", "").lower().split(":"))
        # Reply-To signed where absent too: no one can add one on the way.
        assert {"from", "to", "subject", "date", "message-id", "reply-to", "mime-version",
                "content-type"} <= signed, kind
    tampered = server.messages[0].data.replace(b"Subject: ", b"Subject: Re: ", 1)
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_a_bad_dkim_key_or_half_the_settings_stop_start_up(make_app, tmp_path, dkim_key) -> None:
    """A file that holds no key, or a key without its domain, names the setting."""
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="DKIM_PRIVATE_KEY_FILE"):
        make_app(deliver=False, **dkim_settings(bad))
    with pytest.raises(ConfigError, match="DKIM_DOMAIN"):
        make_app(deliver=False, DKIM_SELECTOR="mail2026", DKIM_PRIVATE_KEY_FILE=str(dkim_key[0]))

