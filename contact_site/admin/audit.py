"""The audit log: who did what in the console and when, without visitors' addresses."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask
from sqlalchemy import Select, String, delete, select
from sqlalchemy.orm import Mapped, mapped_column

from ..app_state import state_of
from ..database import utcnow
from ..extensions import Model, db

DETAIL_MAX = 500


class AuditEntry(Model):
    """One owner action: sign-in, resend, deletion, erasure, export, …"""

    __tablename__ = "audit_entry"

    id: Mapped[int] = mapped_column(primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    # Names, not foreign keys: the line outlives the account and the submission.
    actor: Mapped[str | None] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32))
    submission_id: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[str] = mapped_column(String(DETAIL_MAX), default="")


def record(action: str, actor: str | None, submission_id: str | None = None,
           detail: str = "") -> AuditEntry:
    """Write one audit line in a commit of its own, after the action it records.

    `detail` must never hold a visitor's address, name or text.
    """
    entry = AuditEntry(created_at=utcnow(), actor=actor, action=action,
                       submission_id=submission_id, detail=detail[:DETAIL_MAX])
    db.session.add(entry)
    db.session.commit()
    return entry


def newest_first() -> Select[tuple[AuditEntry]]:
    """Every audit line, newest first."""
    return select(AuditEntry).order_by(AuditEntry.created_at.desc(), AuditEntry.id.desc())


def purge_before(cutoff: datetime) -> int:
    """Delete audit lines older than `cutoff` (kept as long as submissions); how many."""
    result = db.session.execute(delete(AuditEntry).where(AuditEntry.created_at < cutoff))
    db.session.commit()
    return int(result.rowcount)  # type: ignore[attr-defined]


# Deleting old lines is idempotent and indexed: once an hour per process is enough.
PURGE_EVERY_SECONDS = 3600


@dataclass
class AuditState:
    """When this process next deletes the audit lines past retention."""

    next_purge: float = 0.0  # time.monotonic()


def purge_with_submissions(app: Flask, now: datetime) -> None:
    """A daily job: audit lines are kept as long as submissions (CONTACT_RETENTION_DAYS)."""
    days = app.config["CONTACT_RETENTION_DAYS"]
    state = state_of(app, AuditState)
    if not days or time.monotonic() < state.next_purge:
        return
    state.next_purge = time.monotonic() + PURGE_EVERY_SECONDS
    with app.app_context():
        purge_before(now - timedelta(days=days))
