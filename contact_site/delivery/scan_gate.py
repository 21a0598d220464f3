"""Scanning a submission's files before the owner's mail carries them (CONTACT_CLAMD).

The worker asks `hold_reason` before composing an owner's mail: each pending file is
streamed to clamd and its state stored. While the scanner is away, the policy decides:
`hold` keeps the mail queued and retried with the outbox's backoff until its last try
before the give-up time, when the file is marked unscanned and the mail goes without
it; `send` marks it unscanned at once and the mail carries it, saying so. A file too
large for the scanner is unscanned at once, never clean. Composing then attaches only
what may go (compose.attachable).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import update

from ..database import utcnow
from ..extensions import db
from ..scanning import ClamdAddress, ScanResult, parse_address, ping, scan_file
from ..submissions.models import PENDING, SCAN_DETAIL_MAX, UNSCANNED, SubmissionFile
from .models import MailKind, OutboxMail
from .outbox import retry_delay

log = logging.getLogger("contact_site.delivery")

HOLD, SEND = "hold", "send"
GONE = "the file was deleted before it was scanned"


def hold_reason(row: OutboxMail) -> str | None:
    """Scan the pending files of an owner's mail; why it must wait, or None to go on."""
    config = current_app.config
    if not config["CONTACT_CLAMD"] or row.kind != MailKind.OWNER:
        return None
    pending = [stored for stored in row.owning_submission().files if stored.scan_state == PENDING]
    if not pending:
        return None
    address = parse_address(config["CONTACT_CLAMD"])
    waiting: str | None = None
    for stored in pending:
        result = _scan(address, stored)
        if (result.scanner_away and config["CONTACT_SCAN_UNAVAILABLE"] == HOLD
                and not last_try(row)):
            waiting = result.reason
            continue
        _record(stored, result)
    db.session.commit()
    return f"held until its files are scanned: {waiting}" if waiting else None


def _scan(address: ClamdAddress, stored: SubmissionFile) -> ScanResult:
    """One file's scan; unscanned when retention deleted it first."""
    if not stored.path:
        return ScanResult.unscanned(GONE)
    path = Path(current_app.config["UPLOAD_FOLDER"]) / stored.path
    if not path.is_file():
        return ScanResult.unscanned(GONE)
    result = scan_file(address, path, float(current_app.config["CONTACT_SCAN_TIMEOUT"]))
    log.info("file %s of submission %s scanned: %s", stored.id, stored.submission_id,
             result.state if result.state != UNSCANNED else f"unscanned ({result.reason})")
    return result


def last_try(row: OutboxMail) -> bool:
    """Whether the next retry would come after the mail's give-up time."""
    next_try = utcnow() + timedelta(seconds=retry_delay(row.attempts + 1))
    return next_try >= row.expires_at


def _record(stored: SubmissionFile, result: ScanResult) -> None:
    """Store the file's scan, on the row and on the worker's snapshot the mail is composed from."""
    detail = (result.signature or result.reason or None)
    detail = detail[:SCAN_DETAIL_MAX] if detail else None
    db.session.execute(update(SubmissionFile).where(
        SubmissionFile.id == stored.id, SubmissionFile.scan_state == PENDING).values(
        scan_state=result.state, scan_detail=detail))
    stored.scan_state, stored.scan_detail = result.state, detail


def scanner_state() -> str | None:
    """`up` or `down` when scanning is on; None when it is off (for /healthz and status)."""
    config = current_app.config
    if not config["CONTACT_CLAMD"]:
        return None
    return "up" if ping(parse_address(config["CONTACT_CLAMD"]),
                        min(5.0, float(config["CONTACT_SCAN_TIMEOUT"]))) else "down"
