"""Which mail says what: the two mails of a submission, their subjects, words and files.

The owner's mail carries every field the visitor filled in, with its label, a
Reply-To, the uploads, the time received (CONTACT_TIMEZONE) and, when
CONTACT_BASE_URL says where the site is, a link to the message in the console;
the thank-you carries fixed words and its form's PDF, none of the visitor's text.
How a composed mail is written for SMTP (MIME, CRLF, streaming) is mime.py's.
"""

from __future__ import annotations

import calendar
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from email.headerregistry import Address
from pathlib import Path
from typing import Any

from flask import current_app, render_template
from flask_babel import lazy_gettext as _l

from .. import i18n
from ..app_state import state_of
from ..forms import Form, declaration_of, local_text
from ..submissions.answers import Answer, answers_of
from ..submissions.models import (
    DEFAULT_FORM,
    INFECTED,
    PENDING,
    SUSPECT,
    UNSCANNED,
    Submission,
    SubmissionFile,
)
from ..webhooks.chat import console_link
from .headers import mailbox, parse_address
from .mime import CRLFMessage, base64_lines
from .models import MailKind

THANK_YOU_SUBJECT = _l("Thank you for your message")
THANK_YOU_FILENAME = "thank-you.pdf"


def build_message(template: str, subject: str, to: Address, **context: Any) -> CRLFMessage:
    """A message from MAIL_DEFAULT_SENDER to one address, bodies from templates/mail/."""
    return message_with_bodies(subject, to, render_template(f"mail/{template}.txt", **context),
                                render_template(f"mail/{template}.html", **context))


def message_with_bodies(subject: str, to: Address, body: str, html: str | None) -> CRLFMessage:
    """A message from MAIL_DEFAULT_SENDER (shown with the site's name) to one address; a
    text written alone gets an HTML part made of its own words (mail/text.html)."""
    if html is None:
        html = render_template("mail/text.html", title=subject, paragraphs=paragraphs(body))
    sender = parse_address(current_app.config["MAIL_DEFAULT_SENDER"])
    site_name = declaration_of().site.name
    if site_name:  # the site's name shown, the configured address kept
        sender = Address(site_name, addr_spec=sender.addr_spec)
    message = CRLFMessage(subject=subject, recipients=[to.addr_spec], sender=sender.addr_spec,
                          body=body, html=html)
    message.address_headers.update({"From": (sender,), "To": (to,)})
    return message


def paragraphs(text: str) -> list[list[str]]:
    """The text's paragraphs (split at blank lines), each a list of its lines."""
    found: list[list[str]] = [[]]
    for line in text.splitlines():
        if line.strip():
            found[-1].append(line)
        elif found[-1]:
            found.append([])
    return [paragraph for paragraph in found if paragraph]


def compose(kind: str, submission: Submission, message_id: str,
            created_at: datetime, files_refused: str | None = None) -> CRLFMessage:
    """The mail of this kind for a submission, with its fixed Message-ID and date;
    `files_refused`: why the owner's mail goes without its files (the server's reply)."""
    # The owner reads CONTACT_OWNER_LANGUAGE; the visitor the language of their page
    # (README, "Languages").
    if kind == MailKind.OWNER:
        with i18n.in_language(i18n.owner_language()):
            message = owner_mail(submission, files_refused)
    else:
        with i18n.in_language(submission.language):
            message = thank_you_mail(submission)
    message.msgId = message_id
    message.date = calendar.timegm(created_at.timetuple())
    return message


def form_of_submission(submission: Submission) -> Form | None:
    """The form the submission was sent with, if the forms file still declares it."""
    return declaration_of().form(form_slug(submission))


def form_slug(submission: Submission) -> str:
    """The submission's form; the built-in one for a row not yet flushed (no default yet)."""
    return submission.form_slug or DEFAULT_FORM


def owner_mail(submission: Submission, files_refused: str | None = None) -> CRLFMessage:
    """Every field the visitor filled in, for the site owner, with Reply-To, the uploads and
    the message's link in the console; without the uploads when the server refused them."""
    form = form_of_submission(submission)
    message = build_message(
        "to_recipient", owner_subject(submission),
        Address(submission.recipient_name, addr_spec=submission.recipient_address),
        submission=submission, title=visitor_subject(submission),
        fields=shown_fields(submission), built_in=is_built_in(submission),
        form_title=local_text(form.title, i18n.owner_language()) if form else form_slug(submission),
        console_link=console_link(submission.id),
        attached=set() if files_refused else {
            stored.id for stored in submission.files if attachable(stored)},
        files_refused=files_refused,
    )
    # Exactly one address, the validated one, whatever the name holds.
    visitor = mailbox(submission.name or "", submission.email)
    message.reply_to = visitor.addr_spec
    message.address_headers["Reply-To"] = (visitor,)
    uploads = Path(current_app.config["UPLOAD_FOLDER"])
    for stored in submission.files:
        # None once retention deleted it; withheld by its scan: named in the text only.
        if stored.path and attachable(stored) and not files_refused:
            message.attach_file(stored.name, stored.content_type or "application/octet-stream",
                                uploads / stored.path)
    return message


def attachable(stored: SubmissionFile) -> bool:
    """Whether the owner's mail may carry the file, by its virus scan (scan_gate.py): never
    an infected one; an unscanned one only under CONTACT_SCAN_UNAVAILABLE=send; a pending
    one only once scanning is turned off."""
    config = current_app.config
    if stored.scan_state == INFECTED:
        return False
    if stored.scan_state == UNSCANNED:
        return bool(config["CONTACT_SCAN_UNAVAILABLE"] == "send")
    if stored.scan_state == PENDING:
        return not config["CONTACT_CLAMD"]
    return True


def is_built_in(submission: Submission) -> bool:
    """Whether the submission is of the built-in form: its mail reads as it always has."""
    return (not current_app.config.get("CONTACT_FORMS_FILE")
            and form_slug(submission) == DEFAULT_FORM)


@dataclass(frozen=True)
class ShownField:
    """One field as the owner's mail shows it: its label in the owner's language, its value.

    `value` is text (a select's option label, a recipient's name), a bool (checkbox,
    consent), a number or None; `agreed_text` is a consent's exact text; `files` a
    file field's stored files, in order.
    """

    name: str
    type: str
    label: str
    value: Any
    agreed_text: str | None = None
    files: tuple[SubmissionFile, ...] = ()


def shown_fields(submission: Submission) -> list[ShownField]:
    """The submission's fields in its form's order, labelled as they were sent."""
    language = i18n.owner_language()
    files: dict[str, list[SubmissionFile]] = {}
    for stored in submission.files:
        files.setdefault(stored.field, []).append(stored)
    return [_shown(answer, language, files.get(answer.name, ()))
            for answer in answers_of(submission)]


def _shown(answer: Answer, language: str, files: Sequence[SubmissionFile]) -> ShownField:
    label = local_text(answer.label, language)
    value = answer.value
    if answer.type == "select" and answer.details.get("option_label"):
        value = local_text(answer.details["option_label"], language)
    agreed = answer.details.get("text") if answer.type == "consent" else None
    if isinstance(agreed, dict):
        agreed = local_text(agreed, str(answer.details.get("language") or language))
    return ShownField(answer.name, answer.type, label, value, agreed, tuple(files))


def owner_subject(submission: Submission) -> str:
    """CONTACT_SUBJECT_PREFIX and the visitor's subject; a suspect one marked before both."""
    config = current_app.config
    parts = [config["CONTACT_SUBJECT_PREFIX"], visitor_subject(submission)]
    if submission.verdict == SUSPECT:
        parts.insert(0, config["CONTACT_SUSPECT_PREFIX"])
    return " ".join(part.strip() for part in parts if part.strip())


def visitor_subject(submission: Submission) -> str:
    """The visitor's subject; the form's title when it asks none (or it was left empty)."""
    form = form_of_submission(submission)
    if form is None:  # the form left the file: what the row holds
        return submission.subject or form_slug(submission)
    if form.field("subject") is not None and submission.subject.strip():
        return submission.subject
    # One line: a title written over several lines must not break the header.
    return " ".join(local_text(form.title, i18n.owner_language()).split())


def thank_you_mail(submission: Submission) -> CRLFMessage:
    """The visitor's thank-you: fixed words, the form's PDF, none of the visitor's text."""
    parts = thank_you_parts(i18n.current_language(), form_of_submission(submission))
    # The bare address: not even the visitor's name goes into this mail.
    message = message_with_bodies(parts.subject, mailbox("", submission.email),
                                   parts.body, parts.html)
    # An automatic answer to a person's mail (RFC 3834): autoresponders do not answer it.
    message.extra_headers = {"Auto-Submitted": "auto-replied"}
    if parts.pdf_base64 is not None:
        message.attach_encoded(parts.pdf_name, "application/pdf", parts.pdf_base64)
    return message


@dataclass(frozen=True)
class ThankYouParts:
    """What every thank-you mail of one PDF and language shares: subject, bodies, the PDF."""

    subject: str
    body: str
    html: str
    pdf_name: str
    pdf_base64: bytes | None  # None: a form whose thank-you carries no PDF


_parts_lock = threading.Lock()


@dataclass
class ThankYouCache:
    """The thank-you parts made in this process, by language, PDF path and mtime."""

    parts: dict[tuple[str, str, int], ThankYouParts] = field(default_factory=dict)


def thank_you_parts(language: str, form: Form | None = None) -> ThankYouParts:
    """The thank-you mail's constant parts for a form in a language, made once per process.

    Keyed by the PDF's path and modification time too: a replaced PDF (or a changed
    CONTACT_THANK_YOU_PDF) is picked up by the next mail without a restart. A form
    without a PDF has the empty path, which no file has.
    """
    path = thank_you_pdf(form, language)
    key = (language, str(path or ""), path.stat().st_mtime_ns if path else 0)
    cache = state_of(current_app, ThankYouCache).parts
    with _parts_lock:
        found = cache.get(key)
    if found is not None:
        return found
    made = _make_thank_you_parts(language, path, _pdf_name(form))
    with _parts_lock:
        for old in [k for k in cache if k[:2] == key[:2]]:  # an older version of that PDF
            del cache[old]
        cache[key] = made
    return made


def _make_thank_you_parts(language: str, pdf: Path | None, pdf_name: str) -> ThankYouParts:
    context = {"with_pdf": pdf is not None, "site_name": declaration_of().site.name}
    with i18n.in_language(language):
        return ThankYouParts(str(THANK_YOU_SUBJECT),
                             render_template("mail/thank_you.txt", **context),
                             render_template("mail/thank_you.html", **context),
                             pdf_name, base64_lines(pdf.read_bytes()) if pdf else None)


def _pdf_name(form: Form | None) -> str:
    """The attachment's name: the form's own PDF's, or thank-you.pdf."""
    declared = form.thank_you_pdf if form is not None else None
    return declared if isinstance(declared, str) else THANK_YOU_FILENAME


def thank_you_pdf(form: Form | None, language: str) -> Path | None:
    """The form's PDF, or its sibling `<stem>.<language>.pdf` when that exists; None for none."""
    declared = form.thank_you_pdf if form is not None else None
    if declared is False:
        return None
    if declared is None:  # CONTACT_THANK_YOU_PDF, relative to the project folder
        path = Path(current_app.root_path, current_app.config["CONTACT_THANK_YOU_PDF"])
    else:  # the form's own, beside the forms file
        path = Path(current_app.config["CONTACT_FORMS_FILE"]).parent / declared
    translated = path.with_name(f"{path.stem}.{language}{path.suffix}")
    return translated if translated.is_file() else path
