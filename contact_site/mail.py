"""Composing the two mails from templates, and SMTP connections with a timeout."""

from __future__ import annotations

import calendar
import smtplib
from email import policy
from email.charset import QP, Charset
from email.mime.text import MIMEText
from email.utils import make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flask import current_app, render_template
from flask_mail import Connection, Mail, Message

if TYPE_CHECKING:
    from .outbox import OutboxMail

mail = Mail()
THANK_YOU_SUBJECT = "Thank you for your message"
THANK_YOU_FILENAME = "thank-you.pdf"
# SMTP requires CRLF; Flask-Mail's as_bytes() leaves bare LF in the parts.
SMTP_POLICY = policy.SMTP


def _quoted_printable_utf8() -> Charset:
    """UTF-8 with quoted-printable bodies, whose lines stay under SMTP's 998-octet limit.

    Flask-Mail registers utf-8 with no body encoding (raw 8bit), so a long message
    line would be refused by the server ("500 Line too long").
    """
    utf8 = Charset("utf-8")
    utf8.header_encoding = QP
    utf8.body_encoding = QP
    return utf8


class CRLFMessage(Message):
    """A Flask-Mail message with CRLF line endings and quoted-printable bodies."""

    def _mimetext(self, text: str | None, subtype: str = "plain") -> MIMEText:
        """A body part SMTP can carry whatever the visitor typed."""
        return MIMEText(text or "", _subtype=subtype, _charset=_quoted_printable_utf8())

    def as_bytes(self) -> bytes:
        """The message serialised for SMTP."""
        return self._message().as_bytes(policy=SMTP_POLICY)


class TimeoutConnection(Connection):
    """Flask-Mail's connection with a socket timeout, which Flask-Mail 0.10 never sets.

    Written here because Flask-Mail has no setting for it: without one, a server
    that accepts TCP and never greets blocks a worker forever.
    """

    def configure_host(self) -> smtplib.SMTP:
        """Connect, greet, optionally STARTTLS and log in, all under MAIL_TIMEOUT."""
        state, timeout = self.mail, current_app.config["MAIL_TIMEOUT"]
        smtp_class = smtplib.SMTP_SSL if state.use_ssl else smtplib.SMTP
        host = smtp_class(state.server, state.port, timeout=timeout)
        if state.use_tls:
            host.starttls()
        if state.username and state.password:
            host.login(state.username, state.password)
        return host


def connect() -> TimeoutConnection:
    """A connection to the configured SMTP server, for one batch of mails."""
    return TimeoutConnection(current_app.extensions["mail"])


def new_message_id() -> str:
    """A Message-ID in the sender's domain, fixed when a mail is queued."""
    domain = parseaddr(current_app.config["MAIL_DEFAULT_SENDER"])[1].rpartition("@")[2]
    return make_msgid(domain=domain or "localhost")


def build_message(template: str, subject: str, recipients: list[Any], **context: Any) -> Message:
    """A message with text and HTML bodies rendered from templates/mail/<template>.*."""
    return CRLFMessage(
        subject=subject,
        recipients=recipients,
        sender=current_app.config["MAIL_DEFAULT_SENDER"],
        body=render_template(f"mail/{template}.txt", **context),
        html=render_template(f"mail/{template}.html", **context),
    )


def compose(row: OutboxMail) -> Message:
    """The message for one outbox row, with its fixed Message-ID and date."""
    submission = row.submission
    if row.kind == "recipient":
        message = _to_recipient(submission)
    else:
        message = _thank_you(row.to_address)
    message.msgId = row.message_id
    message.date = calendar.timegm(row.created_at.timetuple())
    return message


def _to_recipient(submission: Any) -> Message:
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
        message.attach(submission.attachment_name, submission.attachment_type, path.read_bytes())
    return message


def _thank_you(address: str) -> Message:
    """The visitor's thank-you: fixed words, the PDF, none of the visitor's text."""
    message = build_message("thank_you", THANK_YOU_SUBJECT, [address])
    with current_app.open_resource(current_app.config["CONTACT_THANK_YOU_PDF"]) as pdf:
        message.attach(THANK_YOU_FILENAME, "application/pdf", pdf.read())
    return message
