"""Finding submissions for the console and exports: search, status filter, newest first."""

from __future__ import annotations

from sqlalchemy import Select, and_, exists, func, or_, select
from sqlalchemy.sql.elements import ColumnElement

from ..delivery.models import MailKind, OutboxMail, Status
from ..submissions.content import spellings
from ..submissions.models import SPAM, SUSPECT, Submission, mailbox_key

# `all` leaves spam out: it is reviewed under its own filter.
FILTERS = ("all", "pending", "delivered", "failed", "suspect", "spam")


def _owner_mail(*conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    """There is an owner's mail of this submission meeting the conditions."""
    return exists().where(OutboxMail.submission_id == Submission.id,
                          OutboxMail.kind == MailKind.OWNER, *conditions)


def _status_condition(status: str) -> ColumnElement[bool]:
    """The WHERE clause of one status filter (README, "The owner's console")."""
    if status == "spam":
        return Submission.verdict == SPAM
    if status == "suspect":
        return Submission.verdict == SUSPECT
    not_spam = Submission.verdict != SPAM
    if status == "pending":
        return and_(not_spam, _owner_mail(OutboxMail.status.in_([Status.QUEUED, Status.SENDING])))
    if status == "delivered":
        return and_(not_spam, _owner_mail(OutboxMail.status == Status.SENT))
    if status == "failed":
        return and_(not_spam, _owner_mail(OutboxMail.status == Status.FAILED))
    return not_spam


def _search_condition(q: str) -> ColumnElement[bool]:
    """The search text in the address, name, subject or message, case-insensitively."""
    # The visitor's own % and _ are searched for, not used as wildcards.
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    return or_(*(func.lower(column).like(pattern, escape="\\") for column in (
        Submission.email, Submission.name, Submission.subject, Submission.message)))


def filtered(q: str | None = None, status: str = "all") -> Select[tuple[Submission]]:
    """Submissions matching the search text (address, name, subject, message), newest first."""
    if status not in FILTERS:
        raise ValueError(f"unknown status filter {status!r}")
    query = select(Submission).where(_status_condition(status))
    if q:
        query = query.where(_search_condition(q))
    return query.order_by(Submission.created_at.desc(), Submission.id.desc())


def from_address(address: str) -> ColumnElement[bool]:
    """Submissions sent from this address: compared case-insensitively, or by its mailbox.

    The mailbox key (submissions.models.mailbox_key) joins the ways one mailbox is
    dressed (case, +tag, Gmail's dots, a Unicode or punycode domain): erasing or
    exporting one of them covers all.
    """
    return or_(func.lower(Submission.email).in_(spellings(address)),
               Submission.mailbox_key.in_(spellings(mailbox_key(address))))


def of_address(address: str) -> Select[tuple[Submission]]:
    """Every submission from this address, spam included, newest first."""
    return (select(Submission).where(from_address(address))
            .order_by(Submission.created_at.desc(), Submission.id.desc()))


def of_visitor(address: str, q: str | None = None,
               status: str | None = None) -> Select[tuple[Submission]]:
    """One visitor's submissions, spam included unless a status filter is given."""
    query = of_address(address)
    if status is not None:
        if status not in FILTERS:
            raise ValueError(f"unknown status filter {status!r}")
        query = query.where(_status_condition(status))
    return query.where(_search_condition(q)) if q else query
