"""The outbox as the operator sees it: counts of mails and webhooks, and whether the SMTP
settings work (a configuration error is stored where every process sees it).

A configuration error (no STARTTLS while MAIL_USE_TLS is set, no AUTH, a refused login,
an unverified certificate, a password that would travel in clear text) is not the
server being down: retrying on the usual schedule would only hide it for days. The
batch goes back to the queue without an attempt counted, every queued mail waits
until the next try (the usual backoff, growing with each failure in a row, capped at
DELIVERY_RETRY_MAX_SECONDS) and that wait does not count towards its give-up time.
The first connection that works again clears the error and releases the held mails.

With virus scanning on (CONTACT_CLAMD), the scanner's state and the files still waiting
for a scan are shown beside the SMTP state. A scanner that does not answer is reported
the same way as a configuration error: in the details, while the site keeps taking
messages (the files wait, or go marked unscanned, as CONTACT_SCAN_UNAVAILABLE says).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from flask import current_app
from sqlalchemy import func, select, update

from ..database import utcnow
from ..escaping import escape_controls
from ..extensions import db
from ..submissions.models import PENDING, SubmissionFile
from ..submissions.queries import VERDICT_WINDOW, verdict_counts
from . import outbox, scan_gate
from .models import MailKind, OutboxMail, SMTPHealth, Status

log = logging.getLogger("contact_site.delivery")
ROW = 1
# The two kinds of outbox row an operator tells apart, by the names the counts go by.
MAILS, WEBHOOKS = "mails", "webhooks"
KINDS = (MAILS, WEBHOOKS)
REQUEUE_BATCH = 500  # ids per UPDATE: a long outage may leave thousands failed


def kind_of(row_kind: str) -> str:
    """MAILS or WEBHOOKS, for an outbox row's kind."""
    return WEBHOOKS if row_kind == MailKind.WEBHOOK else MAILS


def kind_counts() -> dict[str, dict[str, int]]:
    """The number of mails and of webhook deliveries in each status."""
    counts = {kind: {status.value: 0 for status in Status} for kind in KINDS}
    found = db.session.execute(select(OutboxMail.kind, OutboxMail.status, func.count())
                               .group_by(OutboxMail.kind, OutboxMail.status)).tuples()
    for row_kind, status, count in found:
        shown = counts[kind_of(row_kind)]
        shown[status] = shown.get(status, 0) + count
    return counts


def _batches(ids: Sequence[int]) -> Iterator[list[int]]:
    for start in range(0, len(ids), REQUEUE_BATCH):
        yield list(ids[start:start + REQUEUE_BATCH])


def requeue_failed(ids: Sequence[int] = ()) -> dict[str, int]:
    """Put failed mails and webhook deliveries (all, or these ids) back in the queue now;
    how many of each kind."""
    query = select(OutboxMail.id, OutboxMail.kind).where(OutboxMail.status == Status.FAILED)
    if ids:
        query = query.where(OutboxMail.id.in_(list(ids)))
    failed: dict[str, list[int]] = {kind: [] for kind in KINDS}
    for row_id, row_kind in db.session.execute(query.order_by(OutboxMail.id)).tuples():
        failed[kind_of(row_kind)].append(row_id)
    return {kind: sum(outbox.requeue(batch) for batch in _batches(wanted))
            for kind, wanted in failed.items()}


def shown_target(url: str | None) -> str:
    """A webhook's URL as the console and the commands show it: scheme and host, never the
    path or query (a chat service's URL carries its token there: ntfy's topic, Slack's)."""
    parts = urlsplit(url or "")
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a number: left out, like anything else not understood
        port = ""
    cut = "…" if parts.path.strip("/") or parts.query or parts.fragment else ""
    return escape_controls(f"{parts.scheme}://{host}{port}/{cut}")


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


@dataclass(frozen=True)
class ScannerState:
    """The virus scanner as the operator sees it: whether clamd answers (`up` or `down`),
    how many stored files still wait for their scan, and the policy while it is down."""

    state: str
    waiting: int
    policy: str

    @property
    def up(self) -> bool:
        """Whether clamd answered."""
        return self.state == "up"


def files_waiting_for_scan() -> int:
    """Stored files whose scan has not been done yet (their owner's mail waits for it)."""
    return db.session.scalar(select(func.count()).select_from(SubmissionFile).where(
        SubmissionFile.scan_state == PENDING)) or 0


def scanner() -> ScannerState | None:
    """The scanner's state and the files waiting for it; None while scanning is off."""
    state = scan_gate.scanner_state()
    if state is None:
        return None
    return ScannerState(state, files_waiting_for_scan(),
                        str(current_app.config["CONTACT_SCAN_UNAVAILABLE"]))


def report() -> dict[str, Any]:
    """What /healthz tells the operator: outbox counts (all rows, then mails and webhook
    deliveries apart), the SMTP state, the day's verdicts, and with scanning on the
    scanner's state and the files waiting for a scan."""
    smtp: dict[str, str | None] = {"error": None, "since": None}
    state = config_error()
    if state is not None:  # the reason may hold a server's reply: escaped
        smtp = {"error": escape_controls(state.error),
                "since": state.since.isoformat(timespec="seconds") + "Z"}
    # The verdicts, so that a rule catching real visitors is noticed (false positives).
    details: dict[str, Any] = {"outbox": outbox.status_counts(), **kind_counts(), "smtp": smtp,
                               "verdicts": verdict_counts(utcnow() - VERDICT_WINDOW)}
    scanning = scanner()
    if scanning is not None:  # absent while scanning is off, as before it existed
        details["scanner"] = scanning.state
        details["scan_pending"] = scanning.waiting
    return details


SETTINGS_REFUSED = "the mail settings do not work, so every mail waits until they are fixed"


def hold_for_config_error(rows: list[OutboxMail], reason: str) -> datetime:
    """Record the error, give the batch back and hold the queue; when the next try is due."""
    now = utcnow()
    db.session.execute(update(SMTPHealth).where(SMTPHealth.id == ROW).values(
        error=reason, since=func.coalesce(SMTPHealth.since, now),
        failures=SMTPHealth.failures + 1, updated_at=now))
    failures = db.session.scalar(select(SMTPHealth.failures).where(SMTPHealth.id == ROW)) or 1
    retry_at = now + timedelta(seconds=outbox.retry_delay(failures))
    db.session.execute(update(SMTPHealth).where(SMTPHealth.id == ROW).values(retry_at=retry_at))
    if failures == 1 and rows:
        # Nothing fails for good while the settings are wrong (the mails wait), yet the
        # owner must hear of it: the form's delivery.failed webhooks, once per error.
        outbox.notify_failure(rows[0], f"{SETTINGS_REFUSED}: {reason}")
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
