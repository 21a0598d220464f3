"""Composing the two mails of a submission from templates, ready to be streamed over SMTP."""

from __future__ import annotations

import base64
import calendar
import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.headerregistry import Address
from email.mime.base import MIMEBase
from email.mime.text import MIMEText
from email.policy import EmailPolicy
from io import BytesIO
from pathlib import Path, PurePath
from typing import Any

from flask import current_app, render_template
from flask_babel import lazy_gettext as _l
from flask_mail import Message

from .. import i18n
from ..submissions.models import SUSPECT, Submission
from .headers import address_header, parse_address, text_header
from .models import Kind

THANK_YOU_SUBJECT = _l("Thank you for your message")
THANK_YOU_FILENAME = "thank-you.pdf"


class SerialisingPolicy(EmailPolicy):
    """`email.policy.SMTP` for writing a composed mail, without reparsing its headers.

    The generator asks each part for its Content-Type and encoding many times, and
    stores its boundary; SMTP's policy runs every such read and write through the
    header registry's parser (a third of a mail's CPU time), though the parts here
    were built by email.mime as plain strings that Message's own parameter code
    reads as they are. Writing is unchanged: long lines are still refolded (RFC 2231
    file names), and the address and subject headers, written by .headers, never are.
    """

    def header_fetch_parse(self, name: str, value: str) -> str:
        """The stored value itself (compat32's reading, which the generator needs)."""
        return value

    def header_store_parse(self, name: str, value: Any) -> tuple[str, Any]:
        """The value as given (the generator stores each part's boundary)."""
        return name, value


# SMTP requires CRLF; Flask-Mail's as_bytes() leaves bare LF in the parts.
SMTP_POLICY = SerialisingPolicy(linesep="\r\n")


class SMTPGenerator(BytesGenerator):
    """The standard generator, with boundaries nobody can guess instead of searched ones.

    The standard one draws a boundary and then searches the whole part for it with a
    regular expression compiled for that boundary (a tenth of a mail's CPU time). 112
    random bits, drawn after the content is fixed, cannot be in it by chance, and a
    visitor cannot write one in to break the mail's structure.
    """

    @classmethod
    def _make_boundary(cls, text: str | None = None) -> str:
        return "=" * 15 + secrets.token_urlsafe(14) + "=="  # as long as the standard one


def serialise(message: MIMEBase) -> bytes:
    """The message as it goes over SMTP (Message.as_bytes with SMTPGenerator)."""
    written = BytesIO()
    SMTPGenerator(written, mangle_from_=False, policy=SMTP_POLICY).flatten(message)
    return written.getvalue()
# 57 raw bytes make one 76-character base64 line; a block of whole lines keeps
# the streamed encoding identical to encoding the file at once.
BASE64_BLOCK = 57 * 1024


def _quoted_printable_utf8() -> Charset:
    """UTF-8 with quoted-printable bodies, whose lines stay under SMTP's 998-octet limit.

    Flask-Mail registers utf-8 with no body encoding (raw 8bit), so a long message
    line would be refused by the server ("500 Line too long").
    """
    utf8 = Charset("utf-8")
    utf8.header_encoding = QP
    utf8.body_encoding = QP
    return utf8


class StreamedMail:
    """A serialised mail whose file attachment is read and base64-encoded while it is sent.

    Holding only one block of the file at a time keeps a 10 MB upload from being
    copied half a dozen times (raw, surrogate str, base64 bytes and str, lines,
    the serialised bytes, smtplib's dot-stuffed copy).
    """

    def __init__(self, head: bytes, path: Path | None = None, tail: bytes = b"") -> None:
        self.head, self.path, self.tail = head, path, tail
        self.file_size = os.stat(path).st_size if path is not None else 0

    def __len__(self) -> int:
        """The size announced to the server (SIZE), before dot-stuffing."""
        lines, rest = divmod(self.file_size, 57)
        encoded = lines * 78 + (4 * -(-rest // 3) + 2 if rest else 0)
        return len(self.head) + encoded + len(self.tail)

    def chunks(self) -> Iterator[bytes]:
        """The mail in pieces that each end at a line end."""
        yield self.head
        if self.path is not None:
            with open(self.path, "rb") as file:
                while block := file.read(BASE64_BLOCK):
                    yield base64.encodebytes(block).replace(b"\n", b"\r\n")
        yield self.tail


class CRLFMessage(Message):
    """A Flask-Mail message with CRLF line endings, quoted-printable bodies, streamed files."""

    file_attachment: tuple[str, str, Path] | None = None
    # An attachment already base64-encoded with CRLF lines (the thank-you PDF, encoded
    # once per process): spliced in as it is.
    encoded_attachment: tuple[str, str, bytes] | None = None
    dispatched = False  # set once the server has answered 250 to the data

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # From, To and Reply-To as structured values: Flask-Mail's own fields keep
        # bare addresses only, for the envelope and its header checks.
        self.address_headers: dict[str, tuple[Address, ...]] = {}

    def _mimetext(self, text: str | None, subtype: str = "plain") -> MIMEText:
        """A body part SMTP can carry whatever the visitor typed."""
        # The stubs want a name; a Charset object is what carries the QP body encoding.
        return MIMEText(text or "", _subtype=subtype,
                        _charset=_quoted_printable_utf8())  # type: ignore[arg-type]

    def _message(self) -> MIMEBase:
        """Flask-Mail's message, with the address and subject headers written from values."""
        message = super()._message()
        composed = {name: address_header(name, addresses)
                    for name, addresses in self.address_headers.items()}
        if self.subject:
            composed["Subject"] = text_header("Subject", self.subject)
        for name, header in composed.items():
            if name in message:
                message.replace_header(name, header)  # in place, keeping the order
            else:
                message[name] = header
        return message

    def attach_file(self, filename: str, content_type: str, path: Path) -> None:
        """Attach a file from disk, read only while the mail is sent (it must exist now)."""
        path.stat()  # a missing file fails here, at compose time, not mid-DATA
        self.file_attachment = (filename, content_type, path)

    def attach_encoded(self, filename: str, content_type: str, encoded: bytes) -> None:
        """Attach content already base64-encoded in CRLF lines of 76 characters."""
        self.encoded_attachment = (filename, content_type, encoded)

    def as_streamed(self) -> StreamedMail:
        """The mail for SMTP, with the file attachment to be streamed from disk."""
        if self.file_attachment is not None:
            filename, content_type, path = self.file_attachment
            head, tail = self._around_stand_in(filename, content_type)
            return StreamedMail(head, path, tail)
        if self.encoded_attachment is not None:
            filename, content_type, encoded = self.encoded_attachment
            head, tail = self._around_stand_in(filename, content_type)
            return StreamedMail(b"".join((head, encoded, tail)))
        return StreamedMail(serialise(self._message()))

    def _around_stand_in(self, filename: str, content_type: str) -> tuple[bytes, bytes]:
        """The mail serialised around its attachment's content: what comes before and after."""
        # Serialise with a unique stand-in for the content, then cut the mail around it:
        # Flask-Mail still writes the part's headers (RFC 2231 names and all).
        stand_in = os.urandom(45)
        self.attach(filename, content_type, stand_in)
        try:
            whole = serialise(self._message())
        finally:
            self.attachments.pop()
        head, found, tail = whole.partition(base64.encodebytes(stand_in).replace(b"\n", b"\r\n"))
        if not found:
            raise RuntimeError("the attachment's stand-in is missing from the serialised mail")
        return head, tail

    def as_bytes(self) -> bytes:
        """The message serialised for SMTP, all in memory."""
        return b"".join(self.as_streamed().chunks())


def build_message(template: str, subject: str, to: Address, **context: Any) -> CRLFMessage:
    """A message from MAIL_DEFAULT_SENDER to one address, bodies from templates/mail/."""
    return _message_with_bodies(subject, to, render_template(f"mail/{template}.txt", **context),
                                render_template(f"mail/{template}.html", **context))


def _message_with_bodies(subject: str, to: Address, body: str, html: str) -> CRLFMessage:
    sender = parse_address(current_app.config["MAIL_DEFAULT_SENDER"])
    message = CRLFMessage(subject=subject, recipients=[to.addr_spec], sender=sender.addr_spec,
                          body=body, html=html)
    message.address_headers.update({"From": (sender,), "To": (to,)})
    return message


def compose(kind: str, submission: Submission, message_id: str,
            created_at: datetime) -> CRLFMessage:
    """The mail of this kind for a submission, with its fixed Message-ID and date."""
    # The owner reads CONTACT_OWNER_LANGUAGE; the visitor the language of their page (SPEC §11).
    if kind == Kind.OWNER:
        with i18n.in_language(i18n.owner_language()):
            message = owner_mail(submission)
    else:
        with i18n.in_language(submission.language):
            message = thank_you_mail(submission)
    message.msgId = message_id
    message.date = calendar.timegm(created_at.timetuple())
    return message


def owner_mail(submission: Submission) -> CRLFMessage:
    """The visitor's message for the site owner, with Reply-To and the upload."""
    message = build_message(
        "to_recipient",
        owner_subject(submission),
        Address(submission.recipient_name, addr_spec=submission.recipient_address),
        submission=submission,
    )
    # Exactly one address, the validated one, whatever the name holds.
    visitor = Address(submission.name or "", addr_spec=submission.email)
    message.reply_to = visitor.addr_spec
    message.address_headers["Reply-To"] = (visitor,)
    if submission.attachment_path:
        path = Path(current_app.config["UPLOAD_FOLDER"]) / submission.attachment_path
        message.attach_file(submission.attachment_name or "attachment",
                            submission.attachment_type or "application/octet-stream", path)
    return message


def owner_subject(submission: Submission) -> str:
    """CONTACT_SUBJECT_PREFIX and the visitor's subject; a suspect one marked before both."""
    config = current_app.config
    parts = [config["CONTACT_SUBJECT_PREFIX"], submission.subject]
    if submission.verdict == SUSPECT:
        parts.insert(0, config["CONTACT_SUSPECT_PREFIX"])
    return " ".join(part.strip() for part in parts if part.strip())


def thank_you_mail(submission: Submission) -> CRLFMessage:
    """The visitor's thank-you: fixed words, the PDF, none of the visitor's text."""
    parts = thank_you_parts(i18n.current_language())
    # The bare address: not even the visitor's name goes into this mail.
    message = _message_with_bodies(parts.subject, Address(addr_spec=submission.email),
                                   parts.body, parts.html)
    message.attach_encoded(THANK_YOU_FILENAME, "application/pdf", parts.pdf_base64)
    return message


@dataclass(frozen=True)
class ThankYouParts:
    """What every thank-you mail in one language shares: subject, bodies, the encoded PDF."""

    subject: str
    body: str
    html: str
    pdf_base64: bytes


_parts_lock = threading.Lock()


def thank_you_parts(language: str) -> ThankYouParts:
    """The thank-you mail's constant parts in this language, made once per process and app.

    Keyed by the PDF's path and modification time too: a replaced PDF (or a changed
    CONTACT_THANK_YOU_PDF) is picked up by the next mail without a restart.
    """
    resource = thank_you_pdf(language)
    path = Path(current_app.root_path) / resource
    key = (language, str(path), path.stat().st_mtime_ns)
    cache: dict[tuple[str, str, int], ThankYouParts] = current_app.extensions.setdefault(
        "contact_thank_you_parts", {})
    with _parts_lock:
        found = cache.get(key)
    if found is not None:
        return found
    encoded = base64.encodebytes(path.read_bytes()).replace(b"\n", b"\r\n")
    with i18n.in_language(language):
        made = ThankYouParts(str(THANK_YOU_SUBJECT), render_template("mail/thank_you.txt"),
                             render_template("mail/thank_you.html"), encoded)
    with _parts_lock:
        for old in [k for k in cache if k[:2] == key[:2]]:  # an older version of that PDF
            del cache[old]
        cache[key] = made
    return made


def thank_you_pdf(language: str) -> str:
    """CONTACT_THANK_YOU_PDF, or its sibling `<stem>.<language>.pdf` when that file exists."""
    default = current_app.config["CONTACT_THANK_YOU_PDF"]
    path = PurePath(default)
    translated = path.with_name(f"{path.stem}.{language}{path.suffix}")
    if (Path(current_app.root_path) / translated).is_file():
        return str(translated)
    return str(default)
