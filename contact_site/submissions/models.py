"""The stored submission, and the size of each of its fields, declared once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..database import utcnow
from ..extensions import db

# Each limit feeds the form's validators (and so the page's maxlength), the
# truncation of what a bot posted, and the column size.
NAME_MAX = 100
EMAIL_MAX = 254  # RFC 5321: 254 octets in all
EMAIL_COLUMN = 320
SUBJECT_MAX = 200
MESSAGE_MAX = 10_000
KEY_MAX = 64


class Submission(db.Model):
    """One message left on the contact page."""

    __tablename__ = "submission"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    submission_key: Mapped[str] = mapped_column(String(KEY_MAX), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    recipient_slug: Mapped[str] = mapped_column(String(100))
    recipient_name: Mapped[str] = mapped_column(String(200))
    recipient_address: Mapped[str] = mapped_column(String(320))
    name: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    email: Mapped[str] = mapped_column(String(EMAIL_COLUMN), index=True)
    subject: Mapped[str] = mapped_column(String(SUBJECT_MAX))
    message: Mapped[str] = mapped_column(Text)
    attachment_name: Mapped[str | None] = mapped_column(String(255))
    attachment_path: Mapped[str | None] = mapped_column(String(255))
    attachment_type: Mapped[str | None] = mapped_column(String(100))
    attachment_size: Mapped[int | None]
    is_spam: Mapped[bool] = mapped_column(default=False)
    thank_you_sent: Mapped[bool] = mapped_column(default=False)
    remote_addr: Mapped[str | None] = mapped_column(String(64))
