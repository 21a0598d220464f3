"""What each console account may see and do: an owner everything; a responder only the
messages for its recipients, and none of the owner's pages.

Every query of submissions the console makes goes through `visible` (the list, its
search and counts, one message, its files), so a message outside a responder's
recipients answers 404 as if it did not exist; the pages and actions in OWNER_ONLY
answer 403 to a responder.
"""

from __future__ import annotations

from typing import TypeVar

from flask_login import current_user
from sqlalchemy import Select, false
from sqlalchemy.sql.elements import ColumnElement

from ..submissions.models import Submission

Query = TypeVar("Query", bound=Select)  # type: ignore[type-arg]

# A responder sees, answers, notes and files (sets the state of) its messages; the rest
# of the console is the owner's.
OWNER_ONLY = frozenset({
    "admin.resend", "admin.send_webhook_again", "admin.spam", "admin.not_spam",
    "admin.delete", "admin.outbox_page", "admin.retry", "admin.export_csv",
    "admin.export_json", "admin.erase", "admin.audit_page", "admin.infected_file",
})


def is_owner() -> bool:
    """Whether the signed-in account is an owner."""
    return bool(current_user.is_authenticated and current_user.is_owner)


def condition() -> ColumnElement[bool] | None:
    """The WHERE clause keeping a responder to its recipients; None for an owner."""
    if is_owner():
        return None
    slugs = current_user.recipient_slugs if current_user.is_authenticated else ()
    return Submission.recipient_slug.in_(slugs) if slugs else false()


def visible(query: Query) -> Query:
    """The query kept to the messages the signed-in account may see."""
    where = condition()
    return query if where is None else query.where(where)


def may_see(submission: Submission) -> bool:
    """Whether the signed-in account may see this message."""
    return is_owner() or submission.recipient_slug in current_user.recipient_slugs
