"""The outbox against a real SMTP server with faults injected, on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import smtplib
from datetime import timedelta
from pathlib import Path

import pytest
from flask_mail import email_dispatched
from sqlalchemy import text, update

from contact_site.database import utcnow
from contact_site.delivery import outbox, worker
from contact_site.delivery.backend import backend_of
from contact_site.delivery.context import LoopContext
from contact_site.delivery.models import OutboxMail, Status
from contact_site.extensions import db
from support.factories import queue_submissions
from support.forms import post_form
from support.outbox import deliver_now, make_due, row, rows, statuses
from support.waiting import wait_until

# An app whose delivery is driven by hand: no background thread.
pytestmark = [pytest.mark.manual_delivery, pytest.mark.each_database]


def message_ids(smtp_server) -> list[str]:
    """The Message-ID of every mail the server accepted, in order."""
    return [mail.message["Message-ID"] for mail in smtp_server.messages]


def test_accepted_mail_is_sent_with_its_fixed_message_id(app, smtp_server):
    (mail_id,) = queue_submissions(app)
    assert deliver_now(app) == 1
    sent = row(app, mail_id)
    assert (sent.status, sent.attempts, sent.last_error) == ("sent", 1, None)
    assert sent.sent_at is not None and sent.claim_token is None
    assert message_ids(smtp_server) == [sent.message_id]
    assert b"\r\n" in smtp_server.messages[0].data and b"\n\n" not in smtp_server.messages[0].data


def test_greylisted_451_then_accepted_records_every_attempt(
        make_app, database_url, smtp_server, caplog):
    """451 twice, then 250: delivered on the third attempt, same Message-ID throughout."""
    app = make_app(DATABASE_URL=database_url, deliver=False,
                   DELIVERY_RETRY_BASE_SECONDS=60, DELIVERY_RETRY_MAX_SECONDS=3600)
    smtp_server.mode, smtp_server.fail_times = "451", 2
    (mail_id,) = queue_submissions(app)
    caplog.set_level(logging.INFO, logger="contact_site.delivery")
    deliver_now(app)
    first = row(app, mail_id)
    assert (first.status, first.attempts) == ("queued", 1)
    assert first.last_error == "451 4.3.0 Try again later"
    backoff = first.next_attempt_at - utcnow()
    assert timedelta(seconds=40) < backoff <= timedelta(seconds=60)
    assert deliver_now(app) == 0, "not due again before its backoff"
    for _ in range(2):
        make_due(app)
        deliver_now(app)
    done = row(app, mail_id)
    assert (done.status, done.attempts, done.last_error) == ("sent", 3, None)
    assert smtp_server.data_commands == 3
    assert message_ids(smtp_server) == [done.message_id]
    lines = [r.getMessage() for r in caplog.records if r.name == "contact_site.delivery"]
    assert [line.split(" reply=")[0] for line in lines] == [
        f"mail {mail_id} attempt 1 transient", f"mail {mail_id} attempt 2 transient",
        f"mail {mail_id} attempt 3 sent"]
    assert "451 4.3.0 Try again later" in lines[0]


@pytest.mark.parametrize("mode, reply", [("550", "550 5.7.1 Rejected by policy"),
                                         ("552", "552 5.3.4 Message too big")])
def test_5xx_reply_fails_the_mail_at_once_with_the_reply(app, smtp_server, mode, reply):
    smtp_server.mode = mode
    (mail_id,) = queue_submissions(app)
    deliver_now(app)
    failed = row(app, mail_id)
    assert (failed.status, failed.attempts, failed.last_error) == ("failed", 1, reply)
    make_due(app)
    assert deliver_now(app) == 0
    assert smtp_server.data_commands == 1


def test_421_is_transient_and_the_next_mail_gets_a_new_connection(app, smtp_server):
    """421 closes the connection inside smtplib; the batch carries on over a new one."""
    smtp_server.mode, smtp_server.fail_times = "421", 1
    first, second = queue_submissions(app, count=2)
    deliver_now(app)
    assert row(app, first).status == "queued"
    assert row(app, first).last_error == "421 4.3.0 Service shutting down"
    assert row(app, second).status == "sent"
    assert smtp_server.connections == 2


def test_refused_greeting_is_transient_for_the_whole_batch(app, smtp_server, monkeypatch):
    """A 5xx to EHLO and HELO concerns the server, not the mails: they are retried."""
    def refuse(_self):
        raise smtplib.SMTPHeloError(554, b"5.7.1 not now")

    monkeypatch.setattr(smtplib.SMTP, "ehlo_or_helo_if_needed", refuse)
    queue_submissions(app, count=2)
    deliver_now(app)
    assert [(r.status, r.last_error) for r in rows(app)] == [("queued", "554 5.7.1 not now")] * 2


def test_connection_dropped_mid_data_then_recovery_delivers_once(app, smtp_server):
    smtp_server.mode, smtp_server.fail_times = "drop_data", 1
    (mail_id,) = queue_submissions(app)
    deliver_now(app)
    assert row(app, mail_id).status == "queued"
    make_due(app)
    deliver_now(app)
    assert row(app, mail_id).status == "sent"
    assert message_ids(smtp_server) == [row(app, mail_id).message_id]


def test_250_then_dropped_at_quit_is_sent_exactly_once(app, smtp_server):
    smtp_server.mode = "drop_quit"
    ids = queue_submissions(app, count=2)
    deliver_now(app)
    assert [r.status for r in rows(app)] == ["sent", "sent"]
    make_due(app)
    assert deliver_now(app) == 0
    assert sorted(message_ids(smtp_server)) == sorted(row(app, i).message_id for i in ids)


def test_dispatched_mail_is_sent_even_when_an_error_follows_the_250(app, smtp_server):
    """Once the server said 250, a later error (here: a failing signal receiver) is moot."""
    def broken_receiver(_app, message):
        raise ConnectionResetError("the connection broke after the 250")

    (mail_id,) = queue_submissions(app)
    with email_dispatched.connected_to(broken_receiver):
        deliver_now(app)
    assert row(app, mail_id).status == "sent"
    make_due(app)
    assert deliver_now(app) == 0
    assert len(smtp_server.messages) == 1


def test_one_connection_carries_a_whole_batch(app, smtp_server):
    queue_submissions(app, count=5, thank_you=True)
    assert deliver_now(app) == 10
    assert statuses(app)["sent"] == 10
    assert smtp_server.connections == 1


@pytest.mark.timeout(30)
def test_silent_server_times_out_as_transient(make_app, database_url, smtp_server):
    """A server that never greets costs MAIL_TIMEOUT, not the worker."""
    app = make_app(DATABASE_URL=database_url, deliver=False, MAIL_TIMEOUT=1)
    smtp_server.mode = "silent"
    (mail_id,) = queue_submissions(app)
    deliver_now(app)
    waited = row(app, mail_id)
    assert (waited.status, waited.attempts) == ("queued", 1)
    assert "timed out" in waited.last_error


@pytest.mark.timeout(30)
def test_silent_reply_to_data_times_out_as_transient(make_app, database_url, smtp_server):
    app = make_app(DATABASE_URL=database_url, deliver=False, MAIL_TIMEOUT=1)
    smtp_server.mode, smtp_server.delay = "delay", 5
    (mail_id,) = queue_submissions(app)
    deliver_now(app)
    assert row(app, mail_id).status == "queued"
    assert "timed out" in row(app, mail_id).last_error


@pytest.mark.timeout(40)
def test_delivery_thread_outlives_a_silent_server(make_app, database_url, smtp_server):
    app = make_app(DATABASE_URL=database_url, deliver=False, MAIL_TIMEOUT=1)
    smtp_server.mode = "silent"
    (mail_id,) = queue_submissions(app)
    delivery = backend_of(app)
    delivery.start()
    delivery.wake()
    wait_until(lambda: row(app, mail_id).attempts >= 1, 15, "a timed-out attempt")
    assert delivery._thread.is_alive()
    smtp_server.mode = "accept"
    wait_until(lambda: row(app, mail_id).status == "sent", 15, "delivery after the timeout")


@pytest.mark.timeout(60)
def test_server_down_at_submit_and_for_retries_delivers_when_back(
        make_app, database_url, smtp_server):
    """No mail is lost while the server is down; the thread delivers once it is back."""
    smtp_server.stop()
    app = make_app(DATABASE_URL=database_url)
    client = app.test_client()
    assert post_form(client).status_code == 303
    assert post_form(client, email="grace@example.com").status_code == 303
    wait_until(lambda: all(r.attempts >= 3 for r in rows(app)), 20, "three failed attempts")
    assert len(rows(app)) == 4
    assert all(r.status in {"queued", "sending"} for r in rows(app))
    assert all("ConnectionRefusedError" in r.last_error for r in rows(app))
    smtp_server.start()
    smtp_server.wait_for(4, timeout=20)
    wait_until(lambda: statuses(app)["sent"] == 4, 10, "four mails sent")
    assert sorted(message_ids(smtp_server)) == sorted(r.message_id for r in rows(app))


def test_missing_attachment_fails_without_blocking_the_queue(app, smtp_server):
    """A poison row (its file gone from disk) ends failed; the mails after it go out."""
    poison, healthy = queue_submissions(app, count=2, attachment=b"%PDF-1.4 small\n")
    submission_id = row(app, poison).submission_id
    (Path(app.config["UPLOAD_FOLDER"]) / submission_id / "attachment.pdf").unlink()
    deliver_now(app)
    failed = row(app, poison)
    assert failed.status == "failed"
    assert failed.last_error.startswith("cannot compose: ")
    assert "FileNotFoundError" in failed.last_error
    assert row(app, healthy).status == "sent"


def test_attachment_arrives_byte_for_byte(app, smtp_server):
    data = bytes(range(256)) * 1000
    queue_submissions(app, attachment=data)
    deliver_now(app)
    (received,) = smtp_server.messages
    (part,) = list(received.message.iter_attachments())
    assert part.get_filename() == "report.pdf"
    assert part.get_content() == data


def test_claims_do_not_overlap_and_an_expired_claim_is_taken_over(app):
    queue_submissions(app, count=3)
    with app.app_context():
        first = outbox.claim_due_mails(limit=2)
        second = outbox.claim_due_mails(limit=2)
        assert len(first) == 2 and len(second) == 1
        assert {r.id for r in first}.isdisjoint(r.id for r in second)
        assert outbox.claim_due_mails() == []
        db.session.execute(update(OutboxMail).where(OutboxMail.id == first[0].id).values(
            claimed_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
        (taken,) = outbox.claim_due_mails()
        assert taken.id == first[0].id and taken.claim_token != first[0].claim_token
        assert outbox.claim_due_mails() == []


def test_a_worker_whose_claim_was_taken_over_cannot_record(app):
    """A late worker's outcome is ignored once another worker holds the mail."""
    (mail_id,) = queue_submissions(app)
    with app.app_context():
        (stale,) = outbox.claim_due_mails()
        db.session.execute(update(OutboxMail).values(claimed_until=utcnow()))
        db.session.commit()
        (fresh,) = outbox.claim_due_mails()
        outbox.settle([outbox.Attempt(stale, Status.FAILED, "late", 0.0)])
    assert row(app, mail_id).status == "sending"
    assert row(app, mail_id).claim_token == fresh.claim_token


def shorten_lease(app, claimed, until) -> None:
    """Make a claim end at `until`, in the database and in the worker's snapshots."""
    with app.app_context():
        db.session.execute(update(OutboxMail).where(OutboxMail.id.in_([r.id for r in claimed]))
                           .values(claimed_until=until))
        db.session.commit()
    for claimed_row in claimed:
        claimed_row.claimed_until = until


def test_a_long_batch_renews_its_lease_before_it_runs_out(app, smtp_server):
    first_id, second_id = queue_submissions(app, count=2)
    seen = []

    def look_at_the_second_claim(_app, message):
        seen.append(db.session.get(OutboxMail, second_id, populate_existing=True).claimed_until)

    with app.app_context():
        claimed = outbox.claim_due_mails()
        shorten_lease(app, claimed, utcnow() + timedelta(seconds=30))
        with email_dispatched.connected_to(look_at_the_second_claim):
            worker.deliver_batch(claimed)
    assert seen[0] > utcnow() + timedelta(seconds=800), "renewed for a full lease"
    assert [r.status for r in rows(app)] == ["sent", "sent"]


def test_a_batch_whose_lease_lapsed_sends_nothing_the_new_holder_owns(app, smtp_server):
    queue_submissions(app, count=2)
    with app.app_context():
        stale = outbox.claim_due_mails()
        shorten_lease(app, stale, utcnow() - timedelta(seconds=1))
        fresh = outbox.claim_due_mails()
        worker.deliver_batch(stale)
    assert smtp_server.messages == []
    assert {r.claim_token for r in rows(app)} == {fresh[0].claim_token}


def test_queued_and_abandoned_mails_are_picked_up_when_a_process_starts(
        make_app, database_url, smtp_server):
    idle = make_app(DATABASE_URL=database_url, deliver=False)
    queued, abandoned = queue_submissions(idle, count=2)
    with idle.app_context():
        db.session.execute(update(OutboxMail).where(OutboxMail.id == abandoned).values(
            status="sending", claim_token="dead-worker",
            claimed_until=utcnow() - timedelta(seconds=1)))
        db.session.commit()
    started = make_app(DATABASE_URL=database_url)  # its thread starts with the app
    smtp_server.wait_for(2, timeout=15)
    wait_until(lambda: statuses(started)["sent"] == 2, 10, "both mails sent")


def test_undelivered_mail_fails_as_expired_after_its_give_up_time(make_app, smtp_server):
    """The last attempt before the give-up time ends it, with the server's reply."""
    smtp_server.mode = "451"
    # Driven by hand; the next try (after 45-60 s) would come after the give-up time.
    app = make_app(deliver=False, DELIVERY_RETRY_BASE_SECONDS=60, DELIVERY_RETRY_MAX_SECONDS=60)
    (mail_id,) = queue_submissions(app)
    with app.app_context():
        db.session.execute(update(OutboxMail).values(expires_at=utcnow() + timedelta(seconds=20)))
        db.session.commit()
    deliver_now(app)
    expired = row(app, mail_id)
    assert expired.status == "failed"
    assert expired.last_error == "expired: 451 4.3.0 Try again later"


def test_thank_you_mails_give_up_after_a_day(app):
    recipient_id, thank_you_id = queue_submissions(app, thank_you=True)
    owner, visitor = row(app, recipient_id), row(app, thank_you_id)
    assert owner.expires_at - owner.created_at == timedelta(hours=120)
    assert visitor.expires_at - visitor.created_at == timedelta(hours=24)


def test_retry_delay_doubles_from_the_base_up_to_the_cap_with_jitter(make_app):
    app = make_app(deliver=False, DELIVERY_RETRY_BASE_SECONDS=60,
                   DELIVERY_RETRY_MAX_SECONDS=3600)
    with app.app_context():
        for attempts, full in [(1, 60), (2, 120), (3, 240), (6, 1920), (7, 3600), (30, 3600)]:
            delays = [outbox.retry_delay(attempts) for _ in range(50)]
            assert all(0.75 * full <= d <= full for d in delays), attempts
            assert len(set(delays)) > 1, "jitter spreads retries apart"


def test_requeue_puts_failed_mails_back_with_a_fresh_give_up_time(app, smtp_server):
    smtp_server.mode, smtp_server.fail_times = "550", 1
    (mail_id,) = queue_submissions(app)
    deliver_now(app)
    with app.app_context():
        assert outbox.requeue([mail_id + 1000]) == 0
        assert outbox.requeue([mail_id]) == 1
    deliver_now(app)
    assert (row(app, mail_id).status, row(app, mail_id).attempts) == ("sent", 2)


def test_requeue_gives_thank_you_mails_their_shorter_give_up_time(app, smtp_server):
    smtp_server.mode = "550"
    recipient_id, thank_you_id = queue_submissions(app, thank_you=True)
    deliver_now(app)
    with app.app_context():
        assert outbox.requeue() == 2
    now = utcnow()
    owner, visitor = row(app, recipient_id), row(app, thank_you_id)
    assert timedelta(hours=119) < owner.expires_at - now <= timedelta(hours=120)
    assert timedelta(hours=23) < visitor.expires_at - now <= timedelta(hours=24)


def test_released_mails_return_to_the_queue_without_an_attempt(app, smtp_server):
    """A worker told to stop gives back what it has not started."""
    queue_submissions(app, count=3)
    calls = iter([False, True, True])
    with app.app_context():
        worker.claim_and_deliver(LoopContext.here(paused=lambda: next(calls)))
    assert [(r.status, r.attempts) for r in rows(app)] == [
        ("sent", 1), ("queued", 0), ("queued", 0)]
    assert all(r.claim_token is None for r in rows(app))


def test_sqlite_connections_are_durable(make_app, tmp_path):
    """WAL, synchronous=FULL and a busy timeout on the app's own connections."""
    app = make_app(deliver=False)
    with app.app_context():
        assert db.session.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert db.session.execute(text("PRAGMA busy_timeout")).scalar() >= 5000


def test_delivery_thread_stops_promptly(make_app, database_url):
    app = make_app(DATABASE_URL=database_url)
    delivery = backend_of(app)
    delivery.start()
    delivery.stop(timeout=5)
    assert not delivery._thread.is_alive()
