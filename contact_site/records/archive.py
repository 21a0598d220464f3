"""Finding submissions for the console and exports: search, status and state filters,
newest first; the count of new messages."""

from __future__ import annotations

from sqlalchemy import Select, and_, exists, func, or_, select, text, true
from sqlalchemy.sql.elements import ColumnElement

from ..delivery.models import MailKind, OutboxMail, Status
from ..extensions import db
from ..submissions.content import spellings
from ..submissions.models import ARCHIVED, NEW, SPAM, STATES, SUSPECT, Submission, mailbox_key

# `all` leaves spam out: it is reviewed under its own filter.
FILTERS = ("all", "pending", "delivered", "failed", "suspect", "spam")
# The inbox's filters by state: one state, or `all` of them. The console's default,
# UNARCHIVED (no `?state=`), is every state but archived.
UNARCHIVED, ANY_STATE = "", "all"
STATE_FILTERS = (*STATES, ANY_STATE)


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


def _state_condition(state: str) -> ColumnElement[bool]:
    """The WHERE clause of one state filter (STATE_FILTERS, or UNARCHIVED)."""
    if state == ANY_STATE:
        return true()
    if state == UNARCHIVED:
        return Submission.state != ARCHIVED
    if state not in STATES:
        raise ValueError(f"unknown state filter {state!r}")
    return Submission.state == state


def new_count(scope: ColumnElement[bool] | None = None) -> int:
    """How many messages the owner has not opened yet, spam left out (it is never news);
    with `scope`, only those it keeps (a responder's recipients)."""
    # ix_submission_state_verdict covers both columns: an owner's count reads no table row.
    query = select(func.count()).select_from(Submission).where(
        Submission.state == NEW, Submission.verdict != SPAM)
    return db.session.scalar(query if scope is None else query.where(scope)) or 0


def _search_condition(q: str) -> ColumnElement[bool]:
    """The search text in the address, name, subject, message or the other fields' values,
    case-insensitively."""
    # The visitor's own % and _ are searched for, not used as wildcards.
    escaped = q.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%"
    return or_(*(func.lower(column).like(pattern, escape="\\") for column in (
        Submission.email, Submission.name, Submission.subject, Submission.message)),
        _in_answers(pattern))


# A declared field's value (never its name, type or label) like the pattern: each entry of
# the answers' JSON list read by the database's own JSON functions.
ANSWER_VALUE_LIKE = {
    "sqlite": "EXISTS (SELECT 1 FROM json_each(submission.answers) AS entry "
              "WHERE lower(json_extract(entry.value, '$.value')) LIKE :answer ESCAPE '\\')",
    "postgresql": "EXISTS (SELECT 1 FROM json_array_elements(submission.answers) AS entry "
                  "WHERE lower(entry ->> 'value') LIKE :answer ESCAPE '\\')",
}


def _in_answers(pattern: str) -> ColumnElement[bool]:
    """Some declared field's value holds the pattern (a file field: one of its names)."""
    clause = ANSWER_VALUE_LIKE[db.engine.dialect.name]
    return text(clause).bindparams(answer=pattern).self_group()  # type: ignore[return-value]


def _narrowed(query: Select[tuple[Submission]], q: str | None,
              form: str | None) -> Select[tuple[Submission]]:
    """The query kept to one form's submissions and to the search text, when given."""
    if form:
        query = query.where(Submission.form_slug == form)
    return query.where(_search_condition(q)) if q else query


def filtered(q: str | None = None, status: str = "all", form: str | None = None,
             state: str = ANY_STATE) -> Select[tuple[Submission]]:
    """Submissions of the form (its slug; any form for None) matching the search text, the
    status filter and the state filter (any state unless told), newest first."""
    if status not in FILTERS:
        raise ValueError(f"unknown status filter {status!r}")
    query = _narrowed(select(Submission).where(_status_condition(status),
                                               _state_condition(state)), q, form)
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


def of_visitor(address: str, q: str | None = None, status: str | None = None,
               form: str | None = None) -> Select[tuple[Submission]]:
    """One visitor's submissions, spam included unless a status filter is given."""
    query = of_address(address)
    if status is not None:
        if status not in FILTERS:
            raise ValueError(f"unknown status filter {status!r}")
        query = query.where(_status_condition(status))
    return _narrowed(query, q, form)
