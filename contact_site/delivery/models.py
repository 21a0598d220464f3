"""The outbox: one row per outgoing mail with its state, and one row per SMTP attempt."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import utcnow
from ..extensions import Model
from ..submissions.models import Submission
from ..submissions.thread import Reply


class Status(StrEnum):
    """Where a mail stands: queued → sending (claimed) → sent or failed, or back to queued."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"


class MailKind(StrEnum):
    """What an outbox row delivers: a mail of a submission, a webhook, or a digest."""

    OWNER = "recipient"  # the message for the chosen recipient
    THANK_YOU = "thank_you"  # the visitor's thank-you
    REPLY = "reply"  # the owner's answer to the visitor, written in the console
    WEBHOOK = "webhook"  # one POST to a form's declared webhook (contact_site.webhooks)
    DIGEST = "digest"  # a recipient's daily summary: of no one submission


class Outcome(StrEnum):
    """What one attempt came to."""

    SENT = "sent"
    TRANSIENT = "transient"
    FAILED = "failed"
    EXPIRED = "expired"
    TAKEOVER = "takeover"  # the claim lapsed while its worker was sending: it was lost
    CONFIG_ERROR = "config_error"  # not counted: the settings, not the mail, were at fault


class OutboxMail(Model):
    """One outgoing mail and where it stands."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(primary_key=True)
    # None for a digest alone: it is about many submissions, or none.
    submission_id: Mapped[str | None] = mapped_column(
        ForeignKey("submission.id", ondelete="CASCADE", name="fk_outbox_submission_id"),
        index=True)
    kind: Mapped[str] = mapped_column(String(16))
    to_address: Mapped[str] = mapped_column(String(320))
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    status: Mapped[str] = mapped_column(String(16), default=Status.QUEUED, index=True)
    attempts: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    expires_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    claim_token: Mapped[str | None] = mapped_column(String(32))
    claimed_until: Mapped[datetime | None]
    # Claims that lapsed while the mail was being sent (its worker died with it).
    takeovers: Mapped[int] = mapped_column(default=0, server_default="0")
    # Set when a worker starts sending this mail, cleared when the attempt ends: a
    # lapsed claim with it set was lost mid-send, without it only waited in a batch.
    send_started_at: Mapped[datetime | None]

    # A webhook's row: the URL posted to, the event and, for delivery.failed, what failed.
    # Its webhook-id is message_id, the same on every retry.
    target: Mapped[str | None] = mapped_column(Text)
    event: Mapped[str | None] = mapped_column(String(32))
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON(none_as_null=True))
    # A reply's row: the reply it carries, deleted with it.
    reply_id: Mapped[int | None] = mapped_column(
        ForeignKey("reply.id", ondelete="CASCADE", name="fk_outbox_reply_id"), index=True)

    submission: Mapped[Submission | None] = relationship(lazy="joined")
    reply: Mapped[Reply | None] = relationship(lazy="joined")

    def owning_submission(self) -> Submission:
        """The submission the row belongs to: every row but a digest has one."""
        if self.submission is None:
            raise ValueError(f"outbox row {self.id} ({self.kind}) belongs to no submission")
        return self.submission


class DeliveryAttempt(Model):
    """One SMTP attempt at one mail: when, how it ended, the server's reply, how long."""

    __tablename__ = "delivery_attempt"

    id: Mapped[int] = mapped_column(primary_key=True)
    mail_id: Mapped[int] = mapped_column(
        ForeignKey("outbox.id", ondelete="CASCADE", name="fk_delivery_attempt_mail_id"),
        index=True)
    attempted_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[str] = mapped_column(String(16))
    reply: Mapped[str | None] = mapped_column(Text)
    seconds: Mapped[float] = mapped_column(default=0.0)


class SMTPHealth(Model):
    """The one row saying whether the SMTP settings work, seen by every process."""

    __tablename__ = "smtp_health"

    id: Mapped[int] = mapped_column(primary_key=True)  # always 1
    error: Mapped[str | None] = mapped_column(Text)  # None while the settings work
    since: Mapped[datetime | None]  # the first configuration error of this run of them
    failures: Mapped[int] = mapped_column(default=0)
    retry_at: Mapped[datetime | None]  # no mail is tried before this once in error
    updated_at: Mapped[datetime | None]
