"""What the owner adds to a message in the console: replies to the visitor, and notes."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..database import utcnow
from ..extensions import Model
from .models import FILE_NAME_MAX

AUTHOR_MAX = 100  # a console username, kept as it was when they wrote
REPLY_MAX = 10_000
NOTE_MAX = 5_000


class Reply(Model):
    """An answer to the visitor written in the console, sent through the outbox."""

    __tablename__ = "reply"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("submission.id", ondelete="CASCADE", name="fk_reply_submission_id"),
        index=True)
    author: Mapped[str] = mapped_column(String(AUTHOR_MAX))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    body: Mapped[str] = mapped_column(Text)
    # The file sent with it, kept in the submission's upload folder (deleted with it).
    file_name: Mapped[str | None] = mapped_column(String(FILE_NAME_MAX))
    file_path: Mapped[str | None] = mapped_column(String(FILE_NAME_MAX))
    file_content_type: Mapped[str | None] = mapped_column(String(100))
    file_size: Mapped[int | None]


class Note(Model):
    """A line the owner keeps about a message ("called back on Monday"); never mailed."""

    __tablename__ = "note"

    id: Mapped[int] = mapped_column(primary_key=True)
    submission_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("submission.id", ondelete="CASCADE", name="fk_note_submission_id"),
        index=True)
    author: Mapped[str] = mapped_column(String(AUTHOR_MAX))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    text: Mapped[str] = mapped_column(Text)
