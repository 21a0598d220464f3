"""The mails the owner's inbox sends: a reply written in the console, and the daily digest.

A reply reads as a person's mail: the owner's words, then the visitor's message
quoted, threaded under the owner's mail (In-Reply-To, References) and answered to
the recipient it was for; no Auto-Submitted header, since a person wrote it. The
digest is a machine's mail (Auto-Submitted: auto-generated) built from ids and
counts its row holds: what it names is read at send time, so a message erased
since is not in it. `compose_row` picks the composer for any outbox row.
"""

from __future__ import annotations

import calendar
from datetime import datetime
from email.headerregistry import Address
from pathlib import Path
from typing import Any

from flask import current_app, render_template
from flask_babel import gettext as _
from sqlalchemy import select

from .. import i18n
from ..extensions import db
from ..submissions.models import Submission
from ..webhooks.chat import console_link
from .compose import compose, message_with_bodies, visitor_subject
from .headers import mailbox
from .mime import CRLFMessage
from .models import MailKind, OutboxMail

REPLY_PREFIX = "Re: "


def reply_subject(subject: str) -> str:
    """`Re: ` and the subject, once: a subject already answered is not prefixed again."""
    return subject if subject[:4].lower() == REPLY_PREFIX.lower() else REPLY_PREFIX + subject


def quoted(text: str) -> str:
    """The visitor's text as a mail quotes it, `> ` before every line."""
    return "\n".join(f"> {line}".rstrip() for line in text.splitlines()) if text else ""


def owner_mail_id(submission_id: str) -> str | None:
    """The Message-ID of the first owner's mail of the submission, which a reply answers."""
    return db.session.scalar(
        select(OutboxMail.message_id).where(OutboxMail.submission_id == submission_id,
                                            OutboxMail.kind == MailKind.OWNER)
        .order_by(OutboxMail.id).limit(1))


def reply_mail(row: OutboxMail) -> CRLFMessage:
    """The owner's reply: to the visitor, answered to the recipient, the message quoted."""
    submission, reply = row.owning_submission(), row.reply
    if reply is None:
        raise ValueError(f"outbox row {row.id} is a reply without its reply")
    with i18n.in_language(submission.language):
        body = render_template("mail/reply.txt", reply=reply, submission=submission,
                               quoted=quoted(submission.message))
        message = message_with_bodies(reply_subject(visitor_subject(submission)),
                                      mailbox(submission.name or "", submission.email),
                                      body, None)
    answered_by = Address(submission.recipient_name, addr_spec=submission.recipient_address)
    message.reply_to = answered_by.addr_spec
    message.address_headers["Reply-To"] = (answered_by,)
    threaded = owner_mail_id(submission.id)
    if threaded:
        message.extra_headers = {"In-Reply-To": threaded, "References": threaded}
    if reply.file_path and reply.file_name:
        message.attach_file(reply.file_name, reply.file_content_type or "application/octet-stream",
                            Path(current_app.config["UPLOAD_FOLDER"]) / reply.file_path)
    return message


def digest_mail(row: OutboxMail) -> CRLFMessage:
    """One recipient's day: what arrived, what is new, what waits for an answer, what failed."""
    data = row.payload or {}
    with i18n.in_language(i18n.owner_language()):
        context = digest_context(data)
        subject = _("Your contact form today: %(arrived)s new message(s)",
                    arrived=len(context["arrived"]))
        body = render_template("mail/digest.txt", **context)
        message = message_with_bodies(subject, Address(addr_spec=row.to_address), body, None)
    message.extra_headers = {"Auto-Submitted": "auto-generated"}
    return message


def digest_context(data: dict[str, Any]) -> dict[str, Any]:
    """The digest's lists as the template shows them, each id read from the database now."""
    wanted = {str(i) for key in ("arrived", "new", "unanswered") for i in data.get(key, ())}
    wanted |= {str(failure["submission_id"]) for failure in data.get("failed", ())
               if failure.get("submission_id")}
    found = {s.id: s for s in db.session.scalars(
        select(Submission).where(Submission.id.in_(sorted(wanted))))} if wanted else {}

    def listed(key: str) -> list[dict[str, Any]]:
        return [shown(found[i]) for i in map(str, data.get(key, ())) if i in found]

    failed = [{"kind": failure.get("kind", ""), "reason": failure.get("reason", ""),
               **(shown(found[str(failure["submission_id"])])
                  if str(failure.get("submission_id")) in found else {})}
              for failure in data.get("failed", ())]
    return {"arrived": listed("arrived"), "new": listed("new"),
            "unanswered": listed("unanswered"), "failed": failed,
            "since": datetime.fromisoformat(str(data["since"])) if data.get("since") else None,
            "days": data.get("unanswered_days", 2), "scan_waiting": data.get("scan_waiting", 0)}


def shown(submission: Submission) -> dict[str, Any]:
    """One message as a digest line names it: subject, when, and its link in the console."""
    return {"id": submission.id, "subject": visitor_subject(submission),
            "received": submission.created_at, "link": console_link(submission.id)}


def compose_row(row: OutboxMail, files_refused: str | None = None) -> CRLFMessage:
    """The mail an outbox row sends, of any kind, with its fixed Message-ID and date;
    `files_refused`: the server's reason to send an owner's mail without its files."""
    if row.kind == MailKind.REPLY:
        message = reply_mail(row)
    elif row.kind == MailKind.DIGEST:
        message = digest_mail(row)
    else:
        return compose(row.kind, row.owning_submission(), row.message_id, row.created_at,
                       files_refused)
    message.msgId = row.message_id
    message.date = calendar.timegm(row.created_at.timetuple())
    return message
