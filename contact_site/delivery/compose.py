"""Which mail says what: the two mails of a submission, their subjects, words and files.

The owner's mail carries the visitor's message, a Reply-To and the upload; the
thank-you carries fixed words and the PDF, none of the visitor's text. How a
composed mail is written for SMTP (MIME, CRLF, streaming) is mime.py's.
"""

from __future__ import annotations

import calendar
import threading
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from pathlib import Path, PurePath
from typing import Any

from flask import current_app, render_template
from flask_babel import lazy_gettext as _l

from .. import i18n
from ..app_state import state_of
from ..submissions.models import SUSPECT, Submission
from .headers import parse_address
from .mime import CRLFMessage, base64_lines
from .models import MailKind

THANK_YOU_SUBJECT = _l("Thank you for your message")
THANK_YOU_FILENAME = "thank-you.pdf"


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
    # The owner reads CONTACT_OWNER_LANGUAGE; the visitor the language of their page
    # (README, "Languages").
    if kind == MailKind.OWNER:
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


@dataclass
class ThankYouCache:
    """The thank-you parts made in this process, by language, PDF path and mtime."""

    parts: dict[tuple[str, str, int], ThankYouParts] = field(default_factory=dict)


def thank_you_parts(language: str) -> ThankYouParts:
    """The thank-you mail's constant parts in this language, made once per process and app.

    Keyed by the PDF's path and modification time too: a replaced PDF (or a changed
    CONTACT_THANK_YOU_PDF) is picked up by the next mail without a restart.
    """
    resource = thank_you_pdf(language)
    path = Path(current_app.root_path) / resource
    key = (language, str(path), path.stat().st_mtime_ns)
    cache = state_of(current_app, ThankYouCache).parts
    with _parts_lock:
        found = cache.get(key)
    if found is not None:
        return found
    encoded = base64_lines(path.read_bytes())
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
