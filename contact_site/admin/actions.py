"""What the owner does to a submission from the console: open it, set its state, resend, send
a webhook again, spam, not spam, delete, retry."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

from flask_babel import gettext as _
from sqlalchemy import select, update

from ..delivery import health, outbox
from ..delivery.backend import backend_of
from ..delivery.models import MailKind, OutboxMail, Status
from ..delivery.webhook_delivery import declared_hook
from ..extensions import db
from ..records import privacy
from ..spam.verdict import REASON_SEPARATOR, reasons_from_text
from ..submissions.models import HAM, NEW, READ, SPAM, STATES, Submission

# Reasons the owner's actions add to the rules' (shown in the console; docs/spam-verdicts.md).
MARKED_SPAM, RELEASED = "marked_spam", "released"
OWNER_REASONS = (MARKED_SPAM, RELEASED)


def deliveries_of(submission_id: str) -> list[OutboxMail]:
    """The submission's outbox rows, mails and webhook deliveries, oldest first."""
    return list(db.session.scalars(select(OutboxMail).where(
        OutboxMail.submission_id == submission_id).order_by(OutboxMail.id)))


def mails_of(submission_id: str) -> list[OutboxMail]:
    """The submission's mails, oldest first."""
    return [row for row in deliveries_of(submission_id) if row.kind != MailKind.WEBHOOK]


def webhooks_of(submission_id: str) -> list[OutboxMail]:
    """The submission's webhook deliveries, oldest first."""
    return [row for row in deliveries_of(submission_id) if row.kind == MailKind.WEBHOOK]


def mail_states(submission_ids: Iterable[str]) -> dict[str, list[tuple[str, str]]]:
    """(kind, status) of each mail of these submissions, oldest first, by submission."""
    states: dict[str, list[tuple[str, str]]] = defaultdict(list)
    query = (select(OutboxMail.submission_id, OutboxMail.kind, OutboxMail.status)
             .where(OutboxMail.submission_id.in_(list(submission_ids))).order_by(OutboxMail.id))
    for submission_id, kind, status in db.session.execute(query):
        states[submission_id].append((kind, status))
    return states


def mark_opened(submission: Submission) -> None:
    """The owner opened it: a new message is now read; any other state stays as set."""
    if submission.state != NEW:
        return  # no write on the pages the owner opens again and again
    # Only while it is still new: a state set meanwhile (in another tab) is kept.
    db.session.execute(update(Submission).where(Submission.id == submission.id,
                                                Submission.state == NEW).values(state=READ))
    db.session.commit()


def set_state(submission: Submission, state: str) -> str:
    """Set its state in the inbox (one of STATES); the state it had before."""
    if state not in STATES:
        raise ValueError(f"unknown state {state!r}")
    before = submission.state
    submission.state = state
    db.session.commit()
    return before


def resend(submission: Submission) -> OutboxMail:
    """Queue a new copy of the owner's mail (a new Message-ID) and wake delivery."""
    mail = outbox.enqueue_mail(submission, MailKind.OWNER, submission.recipient_address)
    db.session.commit()
    backend_of().wake()
    return mail


def webhook_delivery(submission: Submission, delivery_id: int) -> OutboxMail | None:
    """One of the submission's webhook deliveries, or None."""
    return next((row for row in webhooks_of(submission.id) if row.id == delivery_id), None)


def why_not_again(submission: Submission, delivery: OutboxMail) -> str | None:
    """Why this webhook may not be sent again, in the owner's words; None if it may."""
    if submission.verdict == SPAM:
        return str(_("This message is filed as spam: webhooks never receive spam. "
                     "Nothing was queued."))
    if declared_hook(delivery) is None:
        return str(_("This webhook is no longer in the forms file. Nothing was queued."))
    return None


def send_webhook_again(delivery: OutboxMail) -> OutboxMail:
    """Queue a new delivery of the same webhook, event and payload (a new webhook-id) and
    wake delivery."""
    again = outbox.enqueue_webhook(delivery.owning_submission().id, delivery.target or "",
                                   delivery.event or "", delivery.payload)
    db.session.commit()
    backend_of().wake()
    return again


def file_as(submission: Submission, verdict: str, reason: str) -> None:
    """Set the verdict by the owner's hand, keeping the rules' reasons and adding `reason`."""
    kept = [r for r in reasons_from_text(submission.verdict_reasons) if r not in OWNER_REASONS]
    submission.verdict = verdict
    submission.verdict_reasons = REASON_SEPARATOR.join([*kept, reason])


def mark_spam(submission: Submission) -> None:
    """File the submission as spam: out of the archive's default view, deleted sooner."""
    file_as(submission, SPAM, MARKED_SPAM)
    db.session.commit()


def mark_not_spam(submission: Submission) -> bool:
    """Release it (spam or suspect) as ham; queue the owner's mail if none was sent or is due."""
    # Never a thank-you: days later it would surprise the visitor, and a bot could
    # have a stranger mailed by the owner's click.
    file_as(submission, HAM, RELEASED)
    live = (Status.QUEUED, Status.SENDING, Status.SENT)
    has_mail = any(mail.kind == MailKind.OWNER and mail.status in live
                   for mail in mails_of(submission.id))
    if not has_mail:
        outbox.enqueue_mail(submission, MailKind.OWNER, submission.recipient_address)
    db.session.commit()
    if not has_mail:
        backend_of().wake()
    return not has_mail


def delete(submission_id: str) -> str | None:
    """Delete a submission, its mails, their history and its files; what to tell the owner,
    or None if there is no such submission."""
    removed = privacy.delete_submission(submission_id)
    if removed is None:
        return None
    if removed.webhooks:
        return _deleted_with_webhooks(removed.cancelled, removed.in_flight)
    said = str(_("The message, its mails, their history and its files are deleted."))
    if removed.cancelled or removed.in_flight:
        # A mail a worker had in hand may reach the server all the same: said apart.
        said += " " + _("Mails not yet sent: %(cancelled)s cancelled, %(in_flight)s already "
                        "being handed to the server.", cancelled=removed.cancelled,
                        in_flight=removed.in_flight)
    return said


def _deleted_with_webhooks(cancelled: int, in_flight: int) -> str:
    """What deleting a message with webhook deliveries took with it."""
    said = str(_("The message, its mails and webhook deliveries, their history and its "
                 "files are deleted."))
    if cancelled or in_flight:
        said += " " + _("Mails and webhook deliveries not yet sent: %(cancelled)s cancelled, "
                        "%(in_flight)s already being handed over.", cancelled=cancelled,
                        in_flight=in_flight)
    return said


def retry_failed() -> dict[str, int]:
    """Requeue every failed mail and webhook delivery now; how many of each (health.KINDS)."""
    count = health.requeue_failed()
    if any(count.values()):
        backend_of().wake()
    return count


def failed_mails() -> list[OutboxMail]:
    """The failed mails, oldest first, with their last reply in `last_error`."""
    return list(db.session.scalars(select(OutboxMail).where(
        OutboxMail.status == Status.FAILED, outbox.MAILS).order_by(OutboxMail.id)))


def failed_webhooks() -> list[OutboxMail]:
    """The failed webhook deliveries, oldest first, with their last answer in `last_error`."""
    return list(db.session.scalars(select(OutboxMail).where(
        OutboxMail.status == Status.FAILED, outbox.WEBHOOKS).order_by(OutboxMail.id)))
