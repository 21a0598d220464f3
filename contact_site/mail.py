"""Composing the two mails from templates, and SMTP connections with a timeout."""

from __future__ import annotations

import base64
import calendar
import os
import re
import smtplib
from collections.abc import Iterator
from email import policy
from email.charset import QP, Charset
from email.mime.text import MIMEText
from email.utils import make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import current_app, render_template
from flask_mail import (
    BadHeaderError,
    Connection,
    Mail,
    Message,
    email_dispatched,
    sanitize_address,
    sanitize_addresses,
)

if TYPE_CHECKING:
    from .outbox import OutboxMail

mail = Mail()
THANK_YOU_SUBJECT = "Thank you for your message"
THANK_YOU_FILENAME = "thank-you.pdf"
# SMTP requires CRLF; Flask-Mail's as_bytes() leaves bare LF in the parts.
SMTP_POLICY = policy.SMTP
# 57 raw bytes make one 76-character base64 line; a block of whole lines keeps
# the streamed encoding identical to encoding the file at once.
BASE64_BLOCK = 57 * 1024
LEADING_DOT = re.compile(rb"(?m)^\.")
SEND_BLOCK = 64 * 1024


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


class StreamingSMTP(smtplib.SMTP):
    """smtplib's client whose DATA can be sent in pieces from a StreamedMail."""

    def data(self, msg: Any) -> tuple[int, bytes]:
        """Send the mail after DATA, dot-stuffed piece by piece, and return the reply."""
        if not isinstance(msg, StreamedMail):
            return super().data(msg)
        self.putcmd("data")
        code, reply = self.getreply()
        if code != 354:
            raise smtplib.SMTPDataError(code, reply)
        # Pieces are gathered into blocks: small separate writes would meet Nagle's
        # algorithm and the server's delayed ACK, costing 40 ms per mail.
        block, last = bytearray(), b""
        for chunk in msg.chunks():
            if chunk:
                block += LEADING_DOT.sub(b"..", chunk)
                last = chunk
            if len(block) >= SEND_BLOCK:
                # Each block is sent under its own timeout: a slow uplink may take
                # longer than MAIL_TIMEOUT for a whole 10 MB mail.
                self.send(block)
                block.clear()
        block += b".\r\n" if last.endswith(b"\r\n") else b"\r\n.\r\n"
        self.send(block)
        return self.getreply()


class StreamingSMTPSSL(smtplib.SMTP_SSL, StreamingSMTP):
    """The same over implicit TLS."""


class TimeoutConnection(Connection):
    """Flask-Mail's connection with a socket timeout and streamed sending.

    Written here because Flask-Mail 0.10 has no setting for a timeout: without
    one, a server that accepts TCP and never greets blocks a worker forever.
    """

    def configure_host(self) -> smtplib.SMTP:
        """Connect, greet, optionally STARTTLS and log in, all under MAIL_TIMEOUT."""
        state, timeout = self.mail, current_app.config["MAIL_TIMEOUT"]
        smtp_class = StreamingSMTPSSL if state.use_ssl else StreamingSMTP
        host = smtp_class(state.server, state.port, timeout=timeout)
        try:
            # Greet now: a refused EHLO is the server's state, to be retried, not
            # a reply to whichever mail happens to be first in the batch.
            host.ehlo_or_helo_if_needed()
            if state.use_tls:
                host.starttls()
            if state.username and state.password:
                host.login(state.username, state.password)
        except BaseException:
            host.close()
            raise
        return host

    def send(self, message: Message, envelope_from: str | None = None) -> None:
        """Flask-Mail's send, streaming the mail and marking it dispatched on the 250."""
        if message.has_bad_headers():
            raise BadHeaderError
        assert self.host is not None and isinstance(message, CRLFMessage)
        self.host.sendmail(
            sanitize_address(envelope_from or message.sender),
            list(sanitize_addresses(message.send_to)),
            message.as_streamed(),  # type: ignore[arg-type]
            message.mail_options, message.rcpt_options,
        )
        message.dispatched = True  # before anything else can raise
        email_dispatched.send(current_app._get_current_object(), message=message)


def connect() -> TimeoutConnection:
    """A connection to the configured SMTP server, for one batch of mails."""
    return TimeoutConnection(current_app.extensions["mail"])


def new_message_id() -> str:
    """A Message-ID in the sender's domain, fixed when a mail is queued."""
    domain = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])[1].rpartition("@")[2]
    return make_msgid(domain=domain or "localhost")


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


def compose(row: OutboxMail) -> CRLFMessage:
    """The message for one outbox row, with its fixed Message-ID and date."""
    submission = row.submission
    if row.kind == "recipient":
        message = _to_recipient(submission)
    else:
        message = _thank_you(row.to_address)
    message.msgId = row.message_id
    message.date = calendar.timegm(row.created_at.timetuple())
    return message


def _to_recipient(submission: Any) -> CRLFMessage:
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
        message.attach_file(submission.attachment_name, submission.attachment_type, path)
    return message


def _thank_you(address: str) -> CRLFMessage:
    """The visitor's thank-you: fixed words, the PDF, none of the visitor's text."""
    message = build_message("thank_you", THANK_YOU_SUBJECT, [address])
    with current_app.open_resource(current_app.config["CONTACT_THANK_YOU_PDF"]) as pdf:
        message.attach(THANK_YOU_FILENAME, "application/pdf", pdf.read())
    return message
