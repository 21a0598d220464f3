"""Outcomes written by group commit: few commits for many mails, every mail marked in hand
before it goes, no outcome left unwritten behind a slow mail."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event

from contact_site.delivery import outbox
from contact_site.delivery.pool import pool_of
from contact_site.extensions import db
from support.factories import queue_submissions
from support.outbox import deliver_now, row, rows
from support.waiting import wait_until

# Delivery driven by hand, on each database.
pytestmark = [pytest.mark.manual_delivery, pytest.mark.each_database]


def test_a_batch_costs_a_few_commits_not_two_per_mail(app, smtp_server):
    """60 mails to a fast server: every one sent and in the attempt log, in a handful of commits."""
    app.config["DELIVERY_BATCH_SIZE"] = 60
    ids = queue_submissions(app, count=60)
    commits = []

    def count(_connection: object) -> None:
        commits.append(1)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "commit", count)
    try:
        assert deliver_now(app) == 60
    finally:
        event.remove(engine, "commit", count)
    assert [r.status for r in rows(app)] == ["sent"] * 60
    with app.app_context():
        assert all([a.outcome for a in outbox.attempts_of(i)] == ["sent"] for i in ids)
    # One per mail plus one per claim would be 61 (the first release: 121).
    assert len(commits) <= 20, f"{len(commits)} commits for 60 mails"


def test_every_mail_is_marked_in_hand_before_the_server_has_it(app, smtp_server, monkeypatch):
    """A takeover tells a mail lost mid-send by this mark: it is committed before each send."""
    queue_submissions(app, count=12)  # the first chunk is one mail, the next ones more
    unmarked: list[str] = []
    record = smtp_server._record

    def check_then_record(envelope):
        arrived = envelope.content.split(b"Message-ID: ", 1)[1].split(b"\r\n", 1)[0].decode()
        found = next(r for r in rows(app) if r.message_id == arrived)  # its own session
        if found.status != "sending" or found.send_started_at is None:
            unmarked.append(arrived)
        record(envelope)

    monkeypatch.setattr(smtp_server, "_record", check_then_record)
    assert deliver_now(app) == 12
    assert len(smtp_server.messages) == 12
    assert unmarked == []


def test_an_outcome_is_written_while_the_next_mail_is_still_being_sent(
        app, smtp_server, monkeypatch):
    """The first mail's 250 reaches the database while the second hangs at the server."""
    first, second, *_ = queue_submissions(app, count=4)
    pool_of(app).sent_in(0.001)  # all four marked in hand by one commit
    release = threading.Event()
    record = smtp_server._record

    def hang_on_the_second(envelope):
        record(envelope)
        if len(smtp_server.messages) == 2:
            release.wait(10)  # the server sits on its 250

    monkeypatch.setattr(smtp_server, "_record", hang_on_the_second)
    sending = threading.Thread(target=deliver_now, args=(app,))
    sending.start()
    try:
        wait_until(lambda: len(smtp_server.messages) == 2, 10, "the second mail at the server")
        started = time.monotonic()
        wait_until(lambda: row(app, first).status == "sent", 5, "the first mail recorded sent")
        assert time.monotonic() - started < 2.0, "written by the heartbeat, not at the end"
        assert row(app, second).status == "sending"
    finally:
        release.set()
        sending.join(30)
    assert [r.status for r in rows(app)] == ["sent"] * 4
