"""Notices for people: a submission or a failed delivery told in a chat (Slack and the
services that take its body) or a phone notification (ntfy), in the owner's language.

What the visitor or a server wrote is escaped: control characters always, and Slack's
&, < and > in its text, so a subject cannot mention @channel or forge a link.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from flask import current_app
from flask_babel import gettext as _

from .. import i18n
from ..escaping import escape_controls
from ..forms import declaration_of, local_text
from ..submissions.models import Submission

# Where the console shows a submission (the admin blueprint's detail page).
CONSOLE_DETAIL = "/admin/submissions/{id}"
# Slack's control characters in text, & first.
SLACK_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))
# A visitor's @everyone is shown, not obeyed: a word joiner keeps it from being a mention.
MASS_MENTION = re.compile(r"(?<![\w.+-])@(everyone|here|channel)\b", re.IGNORECASE)
PLAIN_TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Notice:
    """A short notice: a title, lines of text, a link to the console when the site has one."""

    title: str
    lines: tuple[str, ...]
    link: str | None
    urgent: bool = False


def console_link(submission_id: str) -> str | None:
    """The submission's page in the console, when CONTACT_BASE_URL says where the site is."""
    base = current_app.config.get("CONTACT_BASE_URL")
    return f"{str(base).rstrip('/')}{CONSOLE_DETAIL.format(id=submission_id)}" if base else None


def form_title(submission: Submission) -> str:
    """The submission's form as the owner reads it; its slug once the file no longer has it."""
    form = declaration_of().form(submission.form_slug)
    return local_text(form.title, i18n.owner_language()) if form else submission.form_slug


def visitor_subject(submission: Submission) -> str | None:
    """The subject the visitor wrote, if their form asks for one (the column holds it)."""
    form = declaration_of().form(submission.form_slug)
    if form is not None and form.field("subject") is None:
        return None
    return submission.subject.strip() or None


def created_notice(submission: Submission) -> Notice:
    """A new message: its form, the visitor's address and subject."""
    subject = visitor_subject(submission)
    with i18n.in_language(i18n.owner_language()):
        title = _("New message on %(form)s", form=escape_controls(form_title(submission)))
        lines = [_("From: %(address)s", address=escape_controls(submission.email))]
        if subject:
            lines.append(_("Subject: %(subject)s", subject=escape_controls(subject)))
    return Notice(title, tuple(lines), console_link(submission.id))


def delivery_words(kind: str) -> str:
    """The delivery a kind names, in words (the kind's code when it is not known here)."""
    words = {"recipient": _("The owner’s mail"), "thank_you": _("The thank-you mail"),
             "webhook": _("A webhook")}
    return str(words.get(kind, kind))


def failed_notice(submission: Submission, kind: str, reason: str) -> Notice:
    """A delivery of a submission failed for good: which one, and why."""
    with i18n.in_language(i18n.owner_language()):
        title = _("Delivery failed on %(form)s", form=escape_controls(form_title(submission)))
        lines = (_("%(delivery)s could not be delivered.", delivery=delivery_words(kind)),
                 _("Reason: %(reason)s", reason=escape_controls(reason)))
    return Notice(title, lines, console_link(submission.id), urgent=True)


def slack_escaped(text: str) -> str:
    """Text Slack shows as written: &, < and > as entities, and no @everyone, @here or
    @channel that would ping a whole channel (Discord's /slack address reads those bare)."""
    for char, entity in SLACK_ESCAPES:
        text = text.replace(char, entity)
    return MASS_MENTION.sub("@\u2060\\1", text)


def slack_text(notice: Notice) -> str:
    """The `text` of a Slack-compatible incoming webhook: the title in bold, then the lines."""
    lines = [f"*{slack_escaped(notice.title)}*", *map(slack_escaped, notice.lines)]
    if notice.link:
        lines.append(notice.link)
    return "\n".join(lines)


def ntfy_text(notice: Notice) -> str:
    """The plain-text message of an ntfy notification."""
    return "\n".join(notice.lines)


def header_text(text: str) -> str:
    """A header value: ASCII as it is, else one RFC 2047 word (ntfy decodes it)."""
    if text.isascii():
        return text
    return f"=?utf-8?b?{base64.b64encode(text.encode()).decode()}?="


def ntfy_headers(notice: Notice) -> dict[str, str]:
    """ntfy's headers: the Title, the console as the Click target, high priority if urgent."""
    headers = {"Content-Type": PLAIN_TEXT, "Title": header_text(notice.title)}
    if notice.link:
        headers["Click"] = notice.link
    if notice.urgent:
        headers["Priority"] = "high"
    return headers
