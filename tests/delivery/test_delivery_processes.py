"""`outbox work` processes: killed mid-send, stopped by SIGTERM, several draining one queue."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from support.factories import queue_submissions
from support.outbox import rows, statuses
from support.waiting import wait_until

# The test's own view of the database: it queues and inspects, never delivers.
pytestmark = [pytest.mark.manual_delivery, pytest.mark.each_database]


def received_ids(smtp_server) -> Counter[str]:
    """How many copies of each Message-ID the server accepted."""
    return Counter(mail.message["Message-ID"] for mail in smtp_server.messages)


@pytest.mark.timeout(90)
def test_worker_killed_mid_send_loses_nothing(app, smtp_server, workers):
    """SIGKILL while holding claims: after a restart every mail arrives; only the one in
    flight may arrive twice, under its one Message-ID."""
    queue_submissions(app, count=8)
    smtp_server.mode, smtp_server.delay = "delay", 1.0
    first, _log = workers(DELIVERY_CLAIM_SECONDS=5)
    smtp_server.wait_for(2, timeout=30)
    time.sleep(0.3)  # the third mail is now between its DATA and the server's 250
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    held = [r for r in rows(app) if r.status == "sending"]
    assert len(held) >= 5, "the killed worker held the claims of the mails it had not sent"
    in_flight = min(held, key=lambda r: r.id).message_id

    smtp_server.mode = "accept"
    workers(DELIVERY_CLAIM_SECONDS=5)
    wait_until(lambda: statuses(app)["sent"] == 8, 40, "every mail sent after the restart")
    copies = received_ids(smtp_server)
    assert set(copies) == {r.message_id for r in rows(app)}
    assert {mid for mid, n in copies.items() if n > 1} <= {in_flight}
    assert copies[in_flight] <= 2


@pytest.mark.timeout(90)
def test_worker_killed_after_the_server_accepted_resends_under_the_same_message_id(
        app, smtp_server, workers, monkeypatch):
    """The worst moment: the server took the mail, the worker died before hearing 250.
    That one arrives twice under its one Message-ID; so may the mails before it whose 250
    was not yet written (group commit), never one recorded sent, none more than twice."""
    queue_submissions(app, count=5)
    victim = []
    record = smtp_server._record

    def record_then_kill(envelope):
        record(envelope)
        if len(smtp_server.messages) == 3 and victim:
            os.kill(victim.pop().pid, signal.SIGKILL)  # before the 250 is written

    monkeypatch.setattr(smtp_server, "_record", record_then_kill)
    first, _log = workers(DELIVERY_CLAIM_SECONDS=5)
    victim.append(first)
    first.wait(30)
    in_flight = smtp_server.messages[2].message["Message-ID"]
    unwritten = {r.message_id for r in rows(app) if r.status == "sending"}
    assert in_flight in unwritten

    workers(DELIVERY_CLAIM_SECONDS=5)
    wait_until(lambda: statuses(app)["sent"] == 5, 40, "every mail sent after the restart")
    copies = received_ids(smtp_server)
    assert set(copies) == {r.message_id for r in rows(app)}
    twice = {mid: n for mid, n in copies.items() if n > 1}
    assert twice[in_flight] == 2
    assert set(twice) <= unwritten, "a mail recorded sent was sent again"
    assert set(twice.values()) == {2}


@pytest.mark.timeout(60)
def test_sigterm_finishes_the_mail_in_hand_and_releases_the_rest(app, smtp_server, workers):
    """`outbox work` stops cleanly: the mail being sent completes, the others go back."""
    queue_submissions(app, count=5)
    smtp_server.mode, smtp_server.delay = "delay", 1.0
    process, log = workers()
    wait_until(lambda: smtp_server.data_commands == 2, 30, "the second mail's DATA")
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(15) == 0
    assert len(smtp_server.messages) == 2, "the mail in hand was finished"
    assert [(r.status, r.attempts) for r in rows(app)] == [
        ("sent", 1), ("sent", 1), ("queued", 0), ("queued", 0), ("queued", 0)]
    assert all(r.claim_token is None for r in rows(app))
    assert "releasing the rest" in log.read_text()


@pytest.mark.timeout(180)
def test_two_workers_drain_500_mails_each_exactly_once(app, smtp_server, workers):
    queue_submissions(app, count=500)
    logs = [workers(DELIVERY_BATCH_SIZE=20)[1] for _ in range(2)]
    smtp_server.wait_for(500, timeout=120)
    wait_until(lambda: statuses(app)["sent"] == 500, 30, "500 mails recorded as sent")
    time.sleep(0.5)  # a duplicate would have arrived by now
    copies = received_ids(smtp_server)
    assert len(copies) == 500
    assert max(copies.values()) == 1
    assert set(copies) == {r.message_id for r in rows(app)}
    for log in logs:
        assert " sent reply=" in log.read_text(), f"{log.name} delivered nothing"
