"""A mail removed under a worker: skipped at the last check, or, if its file goes while it is
being streamed, cut off without the connection carrying anything more."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import delete, select

from contact_site.delivery import outbox, smtp, worker
from contact_site.delivery.models import DeliveryAttempt, OutboxMail
from contact_site.extensions import db
from support.factories import queue_submissions
from support.outbox import deliver_now, row, rows
from support.smtp_server import SMTPTestServer

# Delivery driven by hand, on each database.
pytestmark = [pytest.mark.manual_delivery, pytest.mark.each_database]

PDF = b"%PDF-1.4\n" + b"x" * 200_000 + b"\n%%EOF\n"  # streamed from disk during DATA


def test_a_file_deleted_during_data_cuts_that_mail_and_its_connection(
        app: Flask, smtp_server: SMTPTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """The upload folder goes (an erasure) once the server has said 354 to DATA: that mail
    never arrives, and the next goes over a fresh connection, not as the cut one's text."""
    first, _thank_you, second, _other = queue_submissions(app, count=2, thank_you=True,
                                                          attachment=PDF)
    folder = Path(app.config["UPLOAD_FOLDER"]) / row(app, first).submission_id
    data = smtp.StreamingSMTP.data

    def erase_the_file_first(client: smtp.StreamingSMTP, message: Any) -> tuple[int, bytes]:
        shutil.rmtree(folder, ignore_errors=True)  # the first mail's only: the others stay
        return data(client, message)

    monkeypatch.setattr(smtp.StreamingSMTP, "data", erase_the_file_first)
    assert deliver_now(app) == 4
    received = [mail.message["Message-ID"] for mail in smtp_server.messages]
    assert row(app, first).message_id not in received
    assert row(app, second).message_id in received and len(received) == 3
    assert smtp_server.connections == 2, "a new connection after the cut"
    assert [r.status for r in rows(app)] == ["queued", "sent", "sent", "sent"]


def test_a_mail_whose_row_is_gone_is_skipped_and_nothing_is_recorded(
        app: Flask, smtp_server: SMTPTestServer) -> None:
    """Claimed and marked in hand, then its row deleted: not sent, no attempt, the rest go."""
    first, second = queue_submissions(app, count=2)
    with app.app_context():
        claimed = outbox.claim_due_mails(in_hand=True)
        db.session.execute(delete(OutboxMail).where(OutboxMail.id == first))
        db.session.commit()
        worker.deliver_batch(claimed, in_hand=True)
        attempts = list(db.session.scalars(select(DeliveryAttempt.mail_id)))
    assert [mail.message["Message-ID"] for mail in smtp_server.messages] == [
        row(app, second).message_id]
    assert attempts == [second]
