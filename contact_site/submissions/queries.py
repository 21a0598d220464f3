"""Finding stored submissions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select

from ..extensions import db
from .models import Submission


def find_by_key(key: str) -> Submission | None:
    """The submission already stored under this key, if any."""
    return db.session.scalar(select(Submission).filter_by(submission_key=key))


def thank_you_count(email: str, since: datetime) -> int:
    """How many thank-you mails this address was promised since `since`."""
    count = db.session.scalar(
        select(func.count()).select_from(Submission).where(
            func.lower(Submission.email) == email.lower(), Submission.thank_you_sent,
            Submission.created_at >= since,
        )
    )
    return int(count or 0)
