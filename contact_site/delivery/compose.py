"""Composing the two mails of a submission from templates, ready to be streamed over SMTP."""

from __future__ import annotations

import base64
import calendar
import os
from collections.abc import Iterator
from datetime import datetime
from email import policy
from email.charset import QP, Charset
from email.mime.text import MIMEText
from pathlib import Path
from typing import Any

from flask import current_app, render_template
from flask_mail import Message

from ..submissions.models import Submission
from .models import Kind

THANK_YOU_SUBJECT = "Thank you for your message"
THANK_YOU_FILENAME = "thank-you.pdf"
# SMTP requires CRLF; Flask-Mail's as_bytes() leaves bare LF in the parts.
SMTP_POLICY = policy.SMTP
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
    dispatched = False  # set once the server has answered 250 to the data

    def _mimetext(self, text: str | None, subtype: str = "plain") -> MIMEText:
        """A body part SMTP can carry whatever the visitor typed."""
        return MIMEText(text or "", _subtype=subtype, _charset=_quoted_printable_utf8())

    def attach_file(self, filename: str, content_type: str, path: Path) -> None:
        """Attach a file from disk, read only while the mail is sent (it must exist now)."""
        path.stat()  # a missing file fails here, at compose time, not mid-DATA
        self.file_attachment = (filename, content_type, path)

    def as_streamed(self) -> StreamedMail:
        """The mail for SMTP, with the file attachment to be streamed from disk."""
        if self.file_attachment is None:
            return StreamedMail(self.as_bytes())
        filename, content_type, path = self.file_attachment
        # Serialise with a unique stand-in for the file, then cut the mail around it:
        # Flask-Mail still writes the part's headers (RFC 2231 names and all).
        stand_in = os.urandom(45)
        self.attach(filename, content_type, stand_in)
        try:
            whole = self._message().as_bytes(policy=SMTP_POLICY)
        finally:
            self.attachments.pop()
        head, found, tail = whole.partition(base64.encodebytes(stand_in).replace(b"\n", b"\r\n"))
        if not found:
            raise RuntimeError("the attachment's stand-in is missing from the serialised mail")
        return StreamedMail(head, path, tail)

    def as_bytes(self) -> bytes:
        """The message serialised for SMTP, all in memory."""
        if self.file_attachment is not None:
            return b"".join(self.as_streamed().chunks())
        return self._message().as_bytes(policy=SMTP_POLICY)


def build_message(template: str, subject: str, recipients: list[Any],
                  **context: Any) -> CRLFMessage:
    """A message with text and HTML bodies rendered from templates/mail/<template>.*."""
    return CRLFMessage(
        subject=subject,
        recipients=recipients,
        sender=current_app.config["MAIL_DEFAULT_SENDER"],
        body=render_template(f"mail/{template}.txt", **context),
        html=render_template(f"mail/{template}.html", **context),
    )


def compose(kind: str, submission: Submission, message_id: str,
            created_at: datetime) -> CRLFMessage:
    """The mail of this kind for a submission, with its fixed Message-ID and date."""
    if kind == Kind.OWNER:
        message = owner_mail(submission)
    else:
        message = thank_you_mail(submission)
    message.msgId = message_id
    message.date = calendar.timegm(created_at.timetuple())
    return message


def owner_mail(submission: Submission) -> CRLFMessage:
    """The visitor's message for the site owner, with Reply-To and the upload."""
    prefix = current_app.config["CONTACT_SUBJECT_PREFIX"]
    message = build_message(
        "to_recipient",
        f"{prefix} {submission.subject}".strip(),
        [(submission.recipient_name, submission.recipient_address)],
        submission=submission,
    )
    message.reply_to = (submission.name, submission.email) if submission.name else submission.email
    if submission.attachment_path:
        path = Path(current_app.config["UPLOAD_FOLDER"]) / submission.attachment_path
        message.attach_file(submission.attachment_name or "attachment",
                            submission.attachment_type or "application/octet-stream", path)
    return message


def thank_you_mail(submission: Submission) -> CRLFMessage:
    """The visitor's thank-you: fixed words, the PDF, none of the visitor's text."""
    message = build_message("thank_you", THANK_YOU_SUBJECT, [submission.email])
    with current_app.open_resource(current_app.config["CONTACT_THANK_YOU_PDF"]) as pdf:
        message.attach(THANK_YOU_FILENAME, "application/pdf", pdf.read())
    return message
