"""Composing the two mails of a submission: headers, bodies, escaping, what the visitor typed."""

from __future__ import annotations

import email.policy
import re
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from pathlib import Path

import pytest
from flask import Flask

from contact_site.delivery import mime
from contact_site.delivery.compose import THANK_YOU_SUBJECT, compose
from contact_site.delivery.models import MailKind
from contact_site.submissions.models import Submission, SubmissionFile
from support.factories import build_submission
from support.files import PDF
from support.mails import CREATED, MESSAGE_ID, parsed

# An app for composing only: no delivery thread.
pytestmark = pytest.mark.manual_delivery

NAME = 'Ada "Countess" Lovelace <ada@evil.example>, & co'
SUBJECT = "Engines <b>bold</b> & \"quotes\" 'too'"
MESSAGE = "Hello <script>alert('x')</script>\n\n& a second paragraph: caf\u00e9 \u674e\u96f7"


def submission(**fields: object) -> Submission:
    """A submission as the form stores it, with hostile text, not saved: composing needs no
    database."""
    return build_submission(**{"created_at": CREATED, "name": NAME, "subject": SUBJECT,
                               "message": MESSAGE, "thank_you": True, **fields})


def wire(app: Flask, kind: MailKind, stored: Submission) -> bytes:
    """The bytes that would go to the SMTP server after DATA."""
    with app.app_context():
        return b"".join(compose(kind, stored, MESSAGE_ID, CREATED).as_streamed().chunks())


def one_address(data: bytes, header: str) -> tuple[str, str]:
    """The single (display name, address) of an address header, read by two parsers alike."""
    [modern] = parsed(data)[header].addresses
    raw = BytesParser(policy=email.policy.compat32).parsebytes(data).get_all(header)
    [(_name, legacy)] = getaddresses(raw)  # the undecoded header, as older tools read it
    assert legacy == modern.addr_spec
    return modern.display_name, modern.addr_spec


def attach(app: Flask, stored: Submission, data: bytes, name: str) -> None:
    """Give the submission an uploaded file, stored as the upload code would."""
    folder = Path(app.config["UPLOAD_FOLDER"]) / stored.id
    folder.mkdir(parents=True)
    (folder / "upload.pdf").write_bytes(data)
    stored.files.append(SubmissionFile(field="attachment", position=0, name=name,
                                       path=f"{stored.id}/upload.pdf",
                                       content_type="application/pdf", size=len(data)))


@pytest.mark.parametrize("kind", [MailKind.OWNER, MailKind.THANK_YOU])
def test_every_line_ends_in_crlf_and_stays_within_998_octets(app, kind):
    stored = submission(subject="\u957f" * 200, name="\u674e" * 100)
    attach(app, stored, PDF, "R\u00e9sum\u00e9 \u2013 " + "x" * 200 + ".pdf")
    data = wire(app, kind, stored)
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998


def test_owner_mail_has_the_configured_sender_and_recipient_and_the_visitor_to_reply_to(app):
    data = wire(app, MailKind.OWNER, submission())
    assert one_address(data, "From") == ("Contact form", "noreply@example.org")
    assert one_address(data, "To") == ("Sales", "sales@example.com")
    assert one_address(data, "Reply-To") == (NAME, "ada@example.com")
    assert parsed(data)["Subject"] == f"[Contact] {SUBJECT}"


def test_owner_mail_keeps_the_message_id_and_date_fixed_at_queueing(app):
    message = parsed(wire(app, MailKind.OWNER, submission()))
    assert message["Message-ID"] == MESSAGE_ID
    assert parsedate_to_datetime(message["Date"]).replace(tzinfo=None) == CREATED


def test_owner_mail_without_a_name_replies_to_the_bare_address(app):
    data = wire(app, MailKind.OWNER, submission(name=""))
    assert one_address(data, "Reply-To") == ("", "ada@example.com")


def test_bodies_are_quoted_printable_utf8(app):
    message = parsed(wire(app, MailKind.OWNER, submission(message="caf\u00e9 " + "x" * 2000)))
    for subtype in ("plain", "html"):
        part = message.get_body((subtype,))
        assert part is not None
        assert part["Content-Transfer-Encoding"] == "quoted-printable"
        assert part.get_content_charset() == "utf-8"
        assert "caf\u00e9 " + "x" * 2000 in part.get_content()


def test_plain_body_carries_the_visitors_text_as_typed(app):
    text = parsed(wire(app, MailKind.OWNER, submission())).get_body(("plain",))
    assert text is not None
    content = text.get_content().replace("\r\n", "\n")
    assert MESSAGE in content and SUBJECT in content and NAME in content


def test_html_body_escapes_the_visitors_text(app):
    html = parsed(wire(app, MailKind.OWNER, submission())).get_body(("html",))
    assert html is not None
    content = html.get_content()
    assert "<script>" not in content and "<b>" not in content
    assert "Hello &lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in content
    assert "Engines &lt;b&gt;bold&lt;/b&gt; &amp; &#34;quotes&#34; &#39;too&#39;" in content
    assert "Ada &#34;Countess&#34; Lovelace &lt;ada@evil.example&gt;, &amp; co" in content


def test_owner_mail_attaches_the_upload_byte_for_byte_under_its_name(app):
    stored = submission()
    attach(app, stored, PDF, "R\u00e9sum\u00e9 \u2013 2026.pdf")
    [part] = list(parsed(wire(app, MailKind.OWNER, stored)).iter_attachments())
    assert part.get_filename() == "R\u00e9sum\u00e9 \u2013 2026.pdf"
    assert part.get_content_type() == "application/pdf"
    assert part.get_content() == PDF


def test_built_in_form_mail_reads_as_it_always_has(app):
    """Without a forms file: who wrote to whom, the subject, the message, the file, the footer."""
    stored = build_submission(created_at=CREATED)
    attach(app, stored, PDF, "report.pdf")
    body = parsed(wire(app, MailKind.OWNER, stored)).get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == (
        "Ada Lovelace <ada@example.com> wrote through the contact form to Sales.\n\n"
        "Subject: Engines 0\n\n"
        "Hello,\nabout the analytical engine.\n\n"
        f"Attached: report.pdf ({len(PDF)} bytes)\n"
        "--\n"
        "Reply to this mail to answer ada@example.com.\n"
        f"Submission {stored.id}, received 2026-05-17 09:30 UTC.")


def test_owner_mail_attaches_only_the_files_still_stored(app):
    """A file retention deleted is named in the text and not attached."""
    stored = submission()
    attach(app, stored, PDF, "report.pdf")
    stored.files[0].path = None
    message = parsed(wire(app, MailKind.OWNER, stored))
    assert list(message.iter_attachments()) == []
    body = message.get_body(("plain",))
    assert body is not None and "Attached: report.pdf" in body.get_content()


def test_streamed_mail_announces_the_size_it_sends(app):
    stored = submission()
    attach(app, stored, PDF * 100, "report.pdf")
    with app.app_context():
        streamed = compose(MailKind.OWNER, stored, MESSAGE_ID, CREATED).as_streamed()
    assert len(streamed) == len(b"".join(streamed.chunks()))


def test_thank_you_goes_to_the_bare_address_from_the_sender(app):
    data = wire(app, MailKind.THANK_YOU, submission())
    assert one_address(data, "To") == ("", "ada@example.com")
    assert one_address(data, "From") == ("Contact form", "noreply@example.org")
    assert parsed(data)["Reply-To"] is None
    assert parsed(data)["Subject"] == THANK_YOU_SUBJECT


def test_thank_you_carries_nothing_the_visitor_typed(app):
    typed = submission(name="Zebedee Quux", subject="Qwertyuiop", message="Lorem zyzzyva")
    data = wire(app, MailKind.THANK_YOU, typed)
    message = parsed(data)
    decoded = "".join(str(part.get_content()) for part in message.walk()
                      if part.get_content_maintype() == "text")
    headers = "".join(f"{name}: {value}\n" for name, value in message.items())
    for text in ("Zebedee", "Quux", "Qwertyuiop", "Lorem", "zyzzyva"):
        assert text not in decoded and text not in headers
        assert text.encode() not in data


def test_thank_you_attaches_the_pdf(app):
    [part] = list(parsed(wire(app, MailKind.THANK_YOU, submission())).iter_attachments())
    assert part.get_filename() == "thank-you.pdf"
    assert part.get_content_type() == "application/pdf"
    assert part.get_content().startswith(b"%PDF")


@pytest.mark.parametrize("subject", [
    "=?utf-8?q?attacker=40evil.example?=", "two  spaces   and three", "s" * 200,
    " ".join(["word"] * 40), "\u674e\u96f7 \u957f" * 40, "\u0645\u0631\u062d\u0628\u0627 Ada",
])
def test_subject_arrives_as_typed(app, subject):
    message = parsed(wire(app, MailKind.OWNER, submission(subject=subject)))
    assert message["Subject"] == f"[Contact] {subject}"


def test_sender_without_a_display_name_is_the_bare_address(make_app):
    app = make_app(deliver=False, MAIL_DEFAULT_SENDER="noreply@example.org")
    data = wire(app, MailKind.OWNER, submission())
    assert one_address(data, "From") == ("", "noreply@example.org")


def unboundaried(data: bytes) -> bytes:
    """The mail with its MIME boundaries replaced by numbered stand-ins."""
    for number, boundary in enumerate(re.findall(rb'boundary="([^"]+)"', data)):
        data = data.replace(boundary, b"boundary-%d" % number)
    return data


@pytest.mark.parametrize("kind", [MailKind.OWNER, MailKind.THANK_YOU])
def test_serialising_cheaply_writes_what_the_standard_generator_writes(app, kind, monkeypatch):
    """No header reparsed, no boundary searched for, and not a byte changed: the same
    headers, the same refolded RFC 2231 file name."""
    stored = submission(name="\u674e\u96f7 " * 30, language="zh")
    attach(app, stored, PDF, "\u975e\u5e38\u957f\u7684\u6587\u4ef6\u540d" * 20 + ".pdf")
    cheap = wire(app, kind, stored)
    monkeypatch.setattr(mime, "serialise",
                        lambda message, utf8=False: message.as_bytes(
                            policy=email.policy.SMTP.clone(utf8=utf8)))
    standard = wire(app, kind, stored)
    assert unboundaried(cheap) == unboundaried(standard)
    assert len(set(re.findall(rb'boundary="([^"]+)"', cheap))) == 2


def test_boundaries_are_unpredictable(app):
    """Two serialisations of one mail share no boundary: a visitor cannot write one in."""
    stored = submission()
    first, second = (set(re.findall(rb'boundary="([^"]+)"', wire(app, MailKind.OWNER, stored)))
                     for _ in range(2))
    assert first and second and not first & second


def bodies(data: bytes) -> tuple[str, str]:
    """The plain and HTML bodies of a mail, with LF line ends and no final newline."""
    message = parsed(data)

    def text(subtype: str) -> str:
        part = message.get_body((subtype,))
        assert part is not None
        return str(part.get_content()).replace("\r\n", "\n").rstrip("\n")

    return text("plain"), text("html")


def test_owner_mail_ends_with_the_messages_link_in_the_console(make_app):
    """With CONTACT_BASE_URL: the last line of the text, the last paragraph of the HTML."""
    app = make_app(deliver=False, CONTACT_BASE_URL="https://contact.example.com/")
    stored = submission()
    plain, html = bodies(wire(app, MailKind.OWNER, stored))
    link = f"https://contact.example.com/admin/submissions/{stored.id}"
    assert plain.endswith(f"\nOpen in the console: {link}")
    assert html.endswith(
        f'<p>Open in the console: <a href="{link}">{link}</a></p>\n</body>\n</html>')


def test_owner_mail_has_no_link_without_a_base_url(app):
    plain, html = bodies(wire(app, MailKind.OWNER, submission()))
    assert "/admin/" not in plain and "/admin/" not in html
    assert plain.endswith(" UTC.")


def test_thank_you_never_carries_the_console_link(make_app):
    """The console's address is the owner's business, not the visitor's."""
    app = make_app(deliver=False, CONTACT_BASE_URL="https://contact.example.com")
    data = wire(app, MailKind.THANK_YOU, submission())
    assert b"/admin/" not in data and b"contact.example.com" not in data


@pytest.mark.parametrize(("zone", "shown"), [
    ("UTC", "2026-05-17 09:30 UTC"), ("Europe/Paris", "2026-05-17 11:30 CEST"),
    ("America/Sao_Paulo", "2026-05-17 06:30 UTC-03:00"),
])
def test_owner_mail_tells_when_it_was_received_in_the_owners_zone(make_app, zone, shown):
    app = make_app(deliver=False, CONTACT_TIMEZONE=zone)
    stored = submission()
    plain, html = bodies(wire(app, MailKind.OWNER, stored))
    assert plain.endswith(f"\nSubmission {stored.id}, received {shown}.")
    assert f"Submission {stored.id}, received {shown}.</p>" in html
