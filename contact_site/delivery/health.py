"""Whether the SMTP settings work: a configuration error is stored where every process sees it.

A configuration error (no STARTTLS while MAIL_USE_TLS is set, no AUTH, a refused login,
an unverified certificate, a password that would travel in clear text) is not the
server being down: retrying on the usual schedule would only hide it for days. The
batch goes back to the queue without an attempt counted, every queued mail waits
until the next try (the usual backoff, growing with each failure in a row, capped at
DELIVERY_RETRY_MAX_SECONDS) and that wait does not count towards its give-up time.
The first connection that works again clears the error and releases the held mails.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update

from ..database import utcnow
from ..escaping import escape_controls
from ..extensions import db
from ..submissions.queries import VERDICT_WINDOW, verdict_counts
from . import outbox
from .models import OutboxMail, SMTPHealth

log = logging.getLogger("contact_site.delivery")
ROW = 1


@dataclass(frozen=True)
class ConfigErrorState:
    """A standing SMTP configuration error: its reason, since when, and the next try."""

    error: str
    since: datetime
    failures: int
    retry_at: datetime | None


def config_error() -> ConfigErrorState | None:
    """The standing configuration error, or None while the settings work."""
    found = db.session.get(SMTPHealth, ROW, populate_existing=True)
    if found is None or found.error is None or found.since is None:
        return None
    return ConfigErrorState(found.error, found.since, found.failures, found.retry_at)


def report() -> dict[str, Any]:
    """What /healthz tells the operator: outbox counts, the SMTP state, the day's verdicts."""
    smtp: dict[str, str | None] = {"error": None, "since": None}
    state = config_error()
    if state is not None:  # the reason may hold a server's reply: escaped
        smtp = {"error": escape_controls(state.error),
                "since": state.since.isoformat(timespec="seconds") + "Z"}
    # The verdicts, so that a rule catching real visitors is noticed (false positives).
    return {"outbox": outbox.status_counts(), "smtp": smtp,
            "verdicts": verdict_counts(utcnow() - VERDICT_WINDOW)}


def hold_for_config_error(rows: list[OutboxMail], reason: str) -> datetime:
    """Record the error, give the batch back and hold the queue; when the next try is due."""
    now = utcnow()
    db.session.execute(update(SMTPHealth).where(SMTPHealth.id == ROW).values(
        error=reason, since=func.coalesce(SMTPHealth.since, now),
        failures=SMTPHealth.failures + 1, updated_at=now))
    failures = db.session.scalar(select(SMTPHealth.failures).where(SMTPHealth.id == ROW)) or 1
    retry_at = now + timedelta(seconds=outbox.retry_delay(failures))
    db.session.execute(update(SMTPHealth).where(SMTPHealth.id == ROW).values(retry_at=retry_at))
    db.session.commit()
    held = outbox.hold_queue(rows, reason, retry_at)
    log.error("smtp configuration error: %s; %d mail(s) held, not counted as attempts, "
              "next try at %s", escape_controls(reason), held, f"{retry_at:%Y-%m-%dT%H:%M:%S}Z")
    return retry_at


def clear_config_error() -> None:
    """A connection worked: forget a standing error and make the mails it held due now."""
    state = config_error()
    if state is None:
        return
    cleared = db.session.execute(
        update(SMTPHealth).where(SMTPHealth.id == ROW, SMTPHealth.error.is_not(None)).values(
            error=None, since=None, failures=0, retry_at=None, updated_at=utcnow()))
    db.session.commit()
    if cleared.rowcount:  # type: ignore[attr-defined]  # one process logs it, not each
        released = outbox.release_held(state.retry_at) if state.retry_at else 0
        log.info("smtp configuration error cleared after %d failure(s); %d held mail(s) due now",
                 state.failures, released)


def release_held_mails() -> int:
    """The operator's "try now" after fixing the settings: held mails due at once; how many."""
    state = config_error()
    if state is None or state.retry_at is None:
        return 0
    return outbox.release_held(state.retry_at)
