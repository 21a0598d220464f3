"""Finding submissions for the console and exports: search, status filter, newest first."""

from __future__ import annotations

from sqlalchemy import Select, and_, exists, func, not_, or_, select

from ..delivery.models import Kind, OutboxMail, Status
from ..submissions.models import Submission

# `all` leaves spam out: it is reviewed under its own filter.
FILTERS = ("all", "pending", "delivered", "failed", "suspect", "spam")


def _owner_mail(*conditions: object) -> object:
    """There is an owner's mail of this submission meeting the conditions."""
    return exists().where(OutboxMail.submission_id == Submission.id,
                          OutboxMail.kind == Kind.OWNER, *conditions)


def _status_condition(status: str) -> object:
    """The WHERE clause of one status filter (SPEC §9)."""
    if status == "spam":
        return Submission.is_spam
    if status == "suspect":  # verdicts arrive with the spam defence; none is suspect yet
        return and_(not_(Submission.is_spam), Submission.id.is_(None))
    if status == "pending":
        return and_(not_(Submission.is_spam), _owner_mail(
            OutboxMail.status.in_([Status.QUEUED, Status.SENDING])))
    if status == "delivered":
        return and_(not_(Submission.is_spam), _owner_mail(OutboxMail.status == Status.SENT))
    if status == "failed":
        return and_(not_(Submission.is_spam), _owner_mail(OutboxMail.status == Status.FAILED))
    return not_(Submission.is_spam)


def filtered(q: str | None = None, status: str = "all") -> Select[tuple[Submission]]:
    """Submissions matching the search text (address, name, subject, message), newest first."""
    if status not in FILTERS:
        raise ValueError(f"unknown status filter {status!r}")
    query = select(Submission).where(_status_condition(status))  # type: ignore[arg-type]
    if q:
        # The visitor's own % and _ are searched for, not used as wildcards.
        escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        query = query.where(or_(*(func.lower(column).like(pattern, escape="\\") for column in (
            Submission.email, Submission.name, Submission.subject, Submission.message))))
    return query.order_by(Submission.created_at.desc(), Submission.id.desc())
