"""Reading the outbox and driving delivery by hand, as a worker would."""

from __future__ import annotations

import time
from collections import Counter
from datetime import timedelta

from flask import Flask
from sqlalchemy import select, update

from contact_site.database import utcnow
from contact_site.delivery import outbox, worker
from contact_site.delivery.models import OutboxMail, Status
from contact_site.extensions import db
from support.smtp_server import SMTPTestServer


def rows(app: Flask) -> list[OutboxMail]:
    """Every outbox row, by id, detached from the session."""
    with app.app_context():
        found = list(db.session.scalars(select(OutboxMail).order_by(OutboxMail.id)))
        db.session.expunge_all()
        return found


def row(app: Flask, mail_id: int) -> OutboxMail:
    """One outbox row, detached."""
    return next(r for r in rows(app) if r.id == mail_id)


def mails_of(app: Flask, submission_id: str) -> list[OutboxMail]:
    """The submission's outbox rows, detached."""
    with app.app_context():
        found = list(db.session.scalars(select(OutboxMail).where(
            OutboxMail.submission_id == submission_id).order_by(OutboxMail.id)))
        db.session.expunge_all()
        return found


def statuses(app: Flask) -> dict[str, int]:
    """Outbox counts by status."""
    with app.app_context():
        return outbox.status_counts()


def make_due(app: Flask) -> None:
    """Bring every queued mail's next attempt to now, instead of waiting out the backoff."""
    with app.app_context():
        db.session.execute(update(OutboxMail).where(OutboxMail.status == Status.QUEUED)
                           .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()


def deliver_now(app: Flask) -> int:
    """One delivery pass, as a worker would run it; the number of mails claimed."""
    with app.app_context():
        return worker.claim_and_deliver()


def deliver_everything(app: Flask, timeout: float = 10.0) -> None:
    """Send every queued mail now, waiting out a claim the worker thread may hold."""
    deadline = time.monotonic() + timeout
    with app.app_context():
        while True:
            worker.claim_and_deliver()
            counts = outbox.status_counts()
            db.session.commit()
            if counts["queued"] == counts["sending"] == 0:
                return
            assert time.monotonic() < deadline, f"mails still pending: {counts}"
            time.sleep(0.05)


def each_sent_once(app: Flask, smtp_server: SMTPTestServer) -> bool:
    """Every queued mail reached the server exactly once."""
    copies = Counter(mail.message["Message-ID"] for mail in smtp_server.messages)
    return set(copies) == {r.message_id for r in rows(app)} and max(copies.values()) == 1
