"""Claims that hold while a live worker sends, takeovers that are counted, expiry at claim."""

from __future__ import annotations

import os
import signal
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from contact_site.database import utcnow
from contact_site.delivery import outbox
from contact_site.delivery.models import OutboxMail
from contact_site.extensions import db
from support.factories import queue_submissions
from support.outbox import deliver_now, row, rows, statuses
from support.waiting import wait_until

# The test's own view of the database: it queues and inspects, never delivers.
pytestmark = [pytest.mark.manual_delivery, pytest.mark.each_database]


def history(app, mail_id: int) -> list[tuple[str, str | None]]:
    """The outcome and reply of every attempt at one mail, oldest first."""
    with app.app_context():
        return [(a.outcome, a.reply) for a in outbox.attempts_of(mail_id)]


@pytest.mark.timeout(90)
def test_a_send_longer_than_the_lease_is_not_taken_over_by_a_second_worker(
        app, smtp_server, workers):
    """Lease 6 s, a server taking 8 s per mail, two workers: every mail arrives once."""
    queue_submissions(app, count=4)
    smtp_server.mode, smtp_server.delay = "delay", 8.0
    for _ in range(2):
        workers(DELIVERY_CLAIM_SECONDS=6, DELIVERY_BATCH_SIZE=2, MAIL_TIMEOUT=20)
    wait_until(lambda: statuses(app)["sent"] == 4, 60, "four mails sent")
    copies = Counter(mail.message["Message-ID"] for mail in smtp_server.messages)
    assert copies == Counter({r.message_id: 1 for r in rows(app)})
    assert smtp_server.data_commands == 4, "no mail was sent a second time"
    for mail in rows(app):
        assert [outcome for outcome, _ in history(app, mail.id)] == ["sent"]


@pytest.mark.timeout(90)
def test_a_mail_that_kills_its_worker_each_time_fails_after_the_set_number_of_takeovers(
        app, smtp_server, workers):
    """Each worker dies while sending it; after MAX_TAKEOVERS lapsed claims it is failed."""
    (mail_id,) = queue_submissions(app)
    smtp_server.mode, smtp_server.delay = "delay", 60.0  # it is never answered
    for kill in range(outbox.MAX_TAKEOVERS):
        process, _log = workers(DELIVERY_CLAIM_SECONDS=5, MAIL_TIMEOUT=60)
        wait_until(lambda n=kill + 1: smtp_server.data_commands == n, 30, f"DATA {kill + 1}")
        os.kill(process.pid, signal.SIGKILL)
        process.wait(10)
    workers(DELIVERY_CLAIM_SECONDS=5)
    wait_until(lambda: row(app, mail_id).status == "failed", 30, "the mail failed")
    failed = row(app, mail_id)
    assert failed.last_error == f"worker lost {outbox.MAX_TAKEOVERS} times"
    assert failed.takeovers == outbox.MAX_TAKEOVERS
    assert smtp_server.data_commands == outbox.MAX_TAKEOVERS, "not sent after the last one"
    takeovers = [reply for outcome, reply in history(app, mail_id) if outcome == "takeover"]
    assert len(takeovers) == outbox.MAX_TAKEOVERS
    assert all(reply.startswith("claim lapsed while sending") for reply in takeovers)


def test_mails_waiting_in_a_dead_workers_batch_are_not_counted_as_takeovers(app):
    """Only the mail in hand was lost with the worker; the others were never tried."""
    in_hand, waiting = queue_submissions(app, count=2)
    with app.app_context():
        claimed = outbox.claim_due_mails()
        outbox.settle([], renew=claimed, starting=[claimed[0]])
        db.session.execute(update(OutboxMail).values(claimed_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        outbox.claim_due_mails()
    assert (row(app, in_hand).takeovers, row(app, in_hand).attempts) == (1, 1)
    assert (row(app, waiting).takeovers, row(app, waiting).attempts) == (0, 0)
    assert [outcome for outcome, _ in history(app, in_hand)] == ["takeover"]
    assert history(app, waiting) == []


def test_a_mail_past_its_give_up_time_is_failed_when_claimed_and_never_sent(app, smtp_server):
    (mail_id,) = queue_submissions(app)
    with app.app_context():
        db.session.execute(update(OutboxMail).values(expires_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    deliver_now(app)
    expired = row(app, mail_id)
    assert (expired.status, expired.attempts) == ("failed", 0)
    assert expired.last_error == f"expired: {outbox.EXPIRED_AT_CLAIM}"
    assert history(app, mail_id) == [("expired", outbox.EXPIRED_AT_CLAIM)]
    assert smtp_server.data_commands == 0 and smtp_server.connections == 0


def test_claims_are_timed_by_the_database_clock_not_the_workers(app, monkeypatch):
    """A worker whose clock is an hour ahead neither shortens nor lengthens a claim."""
    queue_submissions(app, count=1)
    ahead = utcnow() + timedelta(hours=1)
    monkeypatch.setattr("contact_site.delivery.outbox.utcnow", lambda: ahead)
    monkeypatch.setattr("contact_site.database.utcnow", lambda: ahead)
    lease = timedelta(seconds=app.config["DELIVERY_CLAIM_SECONDS"])
    with app.app_context():
        (claimed,) = outbox.claim_due_mails()
        database_now = outbox.database_now()
        until = db.session.scalar(select(OutboxMail.claimed_until))
        assert abs(until - (database_now + lease)) < timedelta(seconds=5)
        assert outbox.claim_due_mails() == [], "the claim still holds for another worker"


def test_renewing_gives_every_mail_still_held_a_full_lease(app):
    first, second = queue_submissions(app, count=2)
    with app.app_context():
        claimed = outbox.claim_due_mails()
        db.session.execute(update(OutboxMail).values(claimed_until=utcnow()))
        db.session.commit()
        assert outbox.settle([], renew=claimed) == {first, second}
        lease = timedelta(seconds=app.config["DELIVERY_CLAIM_SECONDS"])
        for until in db.session.scalars(select(OutboxMail.claimed_until)):
            assert until > outbox.database_now() + lease - timedelta(seconds=5)
