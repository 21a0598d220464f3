"""What the owner adds to a message in the console: replies to the visitor, and notes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from ..database import utcnow
from ..extensions import Model
from .models import FILE_NAME_MAX

AUTHOR_MAX = 100  # a console username, kept as it was when they wrote
REPLY_MAX = 10_000
NOTE_MAX = 5_000


class OfSubmission:
    """What a reply and a note share: the message they belong to (and go with), who wrote
    them and when."""

    id: Mapped[int] = mapped_column(primary_key=True)
    author: Mapped[str] = mapped_column(String(AUTHOR_MAX))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    @declared_attr
    def submission_id(cls) -> Mapped[str]:
        """The message, by a foreign key named after the table, deleted with it."""
        return mapped_column(String(32), ForeignKey(
            "submission.id", ondelete="CASCADE", name=f"fk_{cls.__tablename__}_submission_id"),  # type: ignore[attr-defined]
            index=True)


class Reply(OfSubmission, Model):
    """An answer to the visitor written in the console, sent through the outbox."""

    __tablename__ = "reply"

    body: Mapped[str] = mapped_column(Text)
    # The file sent with it, kept in the submission's upload folder (deleted with it).
    file_name: Mapped[str | None] = mapped_column(String(FILE_NAME_MAX))
    file_path: Mapped[str | None] = mapped_column(String(FILE_NAME_MAX))
    file_content_type: Mapped[str | None] = mapped_column(String(100))
    file_size: Mapped[int | None]


class Note(OfSubmission, Model):
    """A line the owner keeps about a message ("called back on Monday"); never mailed."""

    __tablename__ = "note"

    text: Mapped[str] = mapped_column(Text)
