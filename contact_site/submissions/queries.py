"""Finding stored submissions."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import func, select

from ..extensions import db
from .models import VERDICTS, Submission, SubmissionFile

# The period /healthz and `outbox status` count verdicts over.
VERDICT_WINDOW = timedelta(hours=24)


def find_by_key(key: str) -> Submission | None:
    """The submission already stored under this key, if any."""
    return db.session.scalar(select(Submission).filter_by(submission_key=key))


def file_of(submission_id: str, file_id: int) -> SubmissionFile | None:
    """The file with this id if it belongs to this submission, else None."""
    return db.session.scalar(select(SubmissionFile).where(
        SubmissionFile.id == file_id, SubmissionFile.submission_id == submission_id))


def thank_you_count(mailbox: str, since: datetime) -> int:
    """How many thank-you mails this mailbox (a `mailbox_key`) was promised since `since`."""
    count = db.session.scalar(
        select(func.count()).select_from(Submission).where(
            Submission.mailbox_key == mailbox, Submission.thank_you_promised,
            Submission.created_at >= since,
        )
    )
    return int(count or 0)


def verdict_counts(since: datetime) -> dict[str, int]:
    """How many submissions received since `since` got each verdict (ham, suspect, spam)."""
    found = dict(db.session.execute(
        select(Submission.verdict, func.count()).where(Submission.created_at >= since)
        .group_by(Submission.verdict)).tuples().all())
    return {verdict: int(found.get(verdict, 0)) for verdict in VERDICTS}
