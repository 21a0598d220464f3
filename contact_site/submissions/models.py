"""The stored submission, and the size of each of its fields, declared once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String, Text
from sqlalchemy.engine.default import DefaultExecutionContext
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..database import utcnow
from ..extensions import Model
from .content import ascii_address

# Each limit feeds the form's validators (and so the page's maxlength), the
# truncation of what a bot posted, and the column size.
NAME_MAX = 100
EMAIL_MAX = 254  # RFC 5321: 254 octets in all
EMAIL_COLUMN = 320
SUBJECT_MAX = 200
MESSAGE_MAX = 10_000
KEY_MAX = 64
SLUG_MAX = 40
FILE_NAME_MAX = 255
# The form of every submission stored before forms were declared (contact_site.forms).
DEFAULT_FORM = "contact"
# The verdicts a submission is stored with: contact_site.spam.VerdictKind's values
# (docs/spam-verdicts.md).
HAM, SUSPECT, SPAM = "ham", "suspect", "spam"
VERDICTS = (HAM, SUSPECT, SPAM)
# Where a submission stands in the owner's inbox: new until the owner opens it in the
# console, then read, answered or archived as the owner sets it.
NEW, READ, ANSWERED, ARCHIVED = "new", "read", "answered", "archived"
STATES = (NEW, READ, ANSWERED, ARCHIVED)
# A stored file's virus scan (contact_site.scanning), while CONTACT_CLAMD is set: pending
# until the delivery worker scans it, then clean, infected (detail: the signature) or
# unscanned (detail: why). None: stored while scanning was off.
PENDING, CLEAN, INFECTED, UNSCANNED = "pending", "clean", "infected", "unscanned"
SCAN_STATES = (PENDING, CLEAN, INFECTED, UNSCANNED)
SCAN_DETAIL_MAX = 200
# Gmail ignores dots in the part before the @; other providers may not, so only these.
DOTLESS_DOMAINS = {"gmail.com": "gmail.com", "googlemail.com": "gmail.com"}


def mailbox_key(email: str) -> str:
    """The mailbox behind an address however it is dressed: case, `+tag`, Gmail's dots, a
    Unicode or punycode domain.

    `Ada+news@Example.com` and `ada@example.com` reach the same person, so the
    thank-you cap counts them together, and erasure and the access export find both.
    """
    local, at, domain = ascii_address(email).lower().rpartition("@")
    if not at:
        return email.strip().lower()[:EMAIL_COLUMN]  # a bot's junk, kept for the record only
    local = local.partition("+")[0] or local  # "+tag@" alone has no mailbox part to keep
    if domain in DOTLESS_DOMAINS:
        local, domain = local.replace(".", "") or local, DOTLESS_DOMAINS[domain]
    return f"{local}@{domain}"[:EMAIL_COLUMN]


def _mailbox_key_of_row(context: DefaultExecutionContext) -> str:
    """The key of the row being inserted, for rows stored without one."""
    parameters = context.get_current_parameters()  # type: ignore[no-untyped-call]
    return mailbox_key(str(parameters["email"]))


class Submission(Model):
    """One message left on the contact page."""

    __tablename__ = "submission"
    # The console's count of new messages (records.archive.new_count) reads this index alone.
    __table_args__ = (Index("ix_submission_state_verdict", "state", "verdict"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    submission_key: Mapped[str] = mapped_column(String(KEY_MAX), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    recipient_slug: Mapped[str] = mapped_column(String(100))
    recipient_name: Mapped[str] = mapped_column(String(200))
    recipient_address: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    email: Mapped[str] = mapped_column(String(EMAIL_COLUMN), index=True)
    # What the thank-you cap counts (see mailbox_key); set from `email` when not given.
    mailbox_key: Mapped[str] = mapped_column(String(EMAIL_COLUMN), index=True,
                                             default=_mailbox_key_of_row)
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX))
    message: Mapped[str] = mapped_column(Text)
    # The form it was sent with: its slug, and the hash of its declaration then.
    form_slug: Mapped[str] = mapped_column(String(SLUG_MAX), default=DEFAULT_FORM,
                                           server_default=DEFAULT_FORM, index=True)
    form_version: Mapped[str | None] = mapped_column(String(64))
    # Every field of the form in order, with the label it was shown with, and the value
    # of each field that has no column of its own (submissions/answers.py).
    # None is SQL NULL, not JSON null: the database's JSON functions read NULL as no entries.
    answers: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON(none_as_null=True))
    files: Mapped[list[SubmissionFile]] = relationship(
        back_populates="submission", order_by="SubmissionFile.position",
        cascade="all, delete-orphan", passive_deletes=True, lazy="selectin")
    # The spam verdict (contact_site.spam.VerdictKind: ham, suspect, spam), the one record
    # of whether it is spam, and its reason codes, one a line
    # (contact_site.spam.verdict.reasons_from_text).
    verdict: Mapped[str] = mapped_column(String(16), default="ham", server_default="ham",
                                         index=True)
    verdict_reasons: Mapped[str] = mapped_column(Text, default="", server_default="")
    # Its place in the owner's inbox (STATES). Spam is stored new like the rest: the count
    # of new messages and the default list leave it out by its verdict, so a message
    # released from spam unopened arrives in the inbox as new.
    state: Mapped[str] = mapped_column(String(16), default=NEW, server_default=NEW)
    # The visitor's language (docs/languages.md): the thank-you mail is written in it.
    language: Mapped[str] = mapped_column(String(16), default="en", server_default="en")
    # Set when the thank-you mail is queued (within the daily cap), whether or not it
    # goes out later: what the cap counts.
    thank_you_promised: Mapped[bool] = mapped_column(default=False)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
    # sha256 of what was written (submissions/content.py): a known key folds only with it.
    content_hash: Mapped[str | None] = mapped_column(String(64))


class SubmissionFile(Model):
    """One file sent with a submission, under the name of the form's file field."""

    __tablename__ = "submission_file"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("submission.id", ondelete="CASCADE"), index=True)
    field: Mapped[str] = mapped_column(String(SLUG_MAX))
    # Its place among the submission's files: the owner's mail attaches them in this order.
    position: Mapped[int] = mapped_column(default=0)
    name: Mapped[str] = mapped_column(String(FILE_NAME_MAX))
    # Relative to UPLOAD_FOLDER; None once the file is deleted (the name stays on record).
    path: Mapped[str | None] = mapped_column(String(FILE_NAME_MAX))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int]
    scan_state: Mapped[str | None] = mapped_column(String(16))
    scan_detail: Mapped[str | None] = mapped_column(String(SCAN_DETAIL_MAX))
    submission: Mapped[Submission] = relationship(back_populates="files")
