"""Parallel delivery: a bounded pool of loops per process, a rate cap, 421 backs off, and an
idle loop that wakes when the next retry is due."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter

import pytest

from contact_site import create_app
from contact_site.config import ConfigError
from contact_site.delivery.backend import backend_of
from support.factories import queue_submissions
from support.outbox import each_sent_once, rows, statuses
from support.processes import flask_command, stop_process, worker_env
from support.settings import base_config
from support.waiting import wait_until

DELIVERY_THREADS = ("contact-delivery", "contact-lease")


def delivery_threads() -> int:
    """Threads of this process that belong to delivery: the loops and the lease heartbeat."""
    return sum(t.name.startswith(DELIVERY_THREADS) for t in threading.enumerate())


def start_delivery(app) -> None:
    """Start the app's in-process delivery, as a web worker does after it booted."""
    backend_of(app).start()


@pytest.mark.parametrize(("name", "value", "words"), [
    ("DELIVERY_CONCURRENCY", "0", "DELIVERY_CONCURRENCY must be between 1 and 64"),
    ("DELIVERY_CONCURRENCY", "65", "DELIVERY_CONCURRENCY must be between 1 and 64"),
    ("DELIVERY_CONCURRENCY", "four", "DELIVERY_CONCURRENCY must be a whole number"),
    ("DELIVERY_MAX_PER_MINUTE", "0", "DELIVERY_MAX_PER_MINUTE must be between"),
    ("DELIVERY_MAX_PER_MINUTE", "fast", "DELIVERY_MAX_PER_MINUTE must be a whole number"),
])
def test_a_malformed_pool_setting_stops_start_up_naming_it(tmp_path, smtp_server, name, value,
                                                           words):
    with pytest.raises(ConfigError) as raised:
        create_app({**base_config(tmp_path, smtp_server), name: value})
    assert words in str(raised.value.code)


@pytest.mark.parametrize(("value", "expected"), [("off", None), ("", None), ("90", 90)])
def test_the_rate_cap_is_off_unless_given_a_number(tmp_path, smtp_server, value, expected):
    app = create_app({**base_config(tmp_path, smtp_server), "DELIVERY_MAX_PER_MINUTE": value})
    assert app.config["DELIVERY_MAX_PER_MINUTE"] == expected
    assert app.config["DELIVERY_CONCURRENCY"] == 4


@pytest.mark.timeout(30)
def test_an_idle_loop_retries_a_mail_when_its_retry_is_due_not_at_the_next_poll(
        make_app, smtp_server):
    """With a 30 s poll, a retry due in about 1 s is made within a few seconds."""
    app = make_app(deliver=False, DELIVERY_POLL_SECONDS=30, DELIVERY_RETRY_BASE_SECONDS=1,
                   DELIVERY_RETRY_MAX_SECONDS=1)
    smtp_server.mode, smtp_server.fail_times = "451", 1
    (mail_id,) = queue_submissions(app)
    start_delivery(app)
    wait_until(lambda: smtp_server.data_commands >= 1, 10, "the first, refused attempt")
    refused = time.monotonic()
    wait_until(lambda: statuses(app)["sent"] == 1, 10, "the retry")
    assert time.monotonic() - refused < 5, "the loop slept its poll instead of the retry delay"
    (mail,) = rows(app)
    assert (mail.id, mail.attempts) == (mail_id, 2)


@pytest.mark.settings(DELIVERY_CONCURRENCY=4)
@pytest.mark.manual_delivery
@pytest.mark.timeout(40)
def test_a_slow_server_gets_several_connections_at_once_and_every_mail_once(
        app, smtp_server):
    """8 mails at 1 s each with DELIVERY_CONCURRENCY=4: about 2 s, not 8; threads bounded."""
    smtp_server.mode, smtp_server.delay = "delay", 1.0
    queue_submissions(app, count=8)
    started = time.monotonic()
    start_delivery(app)
    peak_threads = 0
    while statuses(app)["sent"] < 8 and time.monotonic() - started < 20:
        peak_threads = max(peak_threads, delivery_threads())
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    assert statuses(app)["sent"] == 8
    assert elapsed < 6, f"8 mails took {elapsed:.1f}s: not delivered in parallel"
    assert smtp_server.peak_concurrent_data >= 3
    assert each_sent_once(app, smtp_server)
    assert peak_threads <= 4 + 1, "the pool's loops plus one lease heartbeat at most"


@pytest.mark.settings(DELIVERY_CONCURRENCY=4, DELIVERY_MAX_PER_MINUTE=120)
@pytest.mark.manual_delivery
@pytest.mark.timeout(40)
def test_the_rate_cap_spaces_mails_across_all_the_loops(app, smtp_server):
    """DELIVERY_MAX_PER_MINUTE=120: one mail every 0.5 s at most, whatever the concurrency."""
    queue_submissions(app, count=5)
    started = time.monotonic()
    start_delivery(app)
    wait_until(lambda: statuses(app)["sent"] == 5, 20, "the capped mails")
    assert time.monotonic() - started >= 4 * 0.5 - 0.1
    assert each_sent_once(app, smtp_server)


@pytest.mark.settings(DELIVERY_CONCURRENCY=4)
@pytest.mark.manual_delivery
@pytest.mark.timeout(60)
def test_a_421_halves_the_connections_for_a_while(app, smtp_server, caplog):
    """After "421 too many connections", a pool of 4 sends over at most 2 connections."""
    smtp_server.mode, smtp_server.fail_times = "421", 1
    (first,) = queue_submissions(app)
    start_delivery(app)
    wait_until(lambda: statuses(app)["sent"] == 1, 15, "the mail refused with 421, retried")
    assert "answered 421: 2 delivery loop(s)" in caplog.text
    smtp_server.clear()
    smtp_server.mode, smtp_server.delay = "delay", 0.5
    queue_submissions(app, count=8)
    backend_of(app).wake()
    wait_until(lambda: statuses(app)["sent"] == 9, 20, "the mails after the 421")
    assert 1 <= smtp_server.peak_concurrent_data <= 2
    assert [r.attempts for r in rows(app)] == [2] + [1] * 8


@pytest.mark.manual_delivery
@pytest.mark.each_database
@pytest.mark.timeout(60)
def test_outbox_work_runs_the_pool_and_once_exits_when_all_is_sent(
        app, smtp_server, tmp_path):
    """`outbox work --once` with DELIVERY_CONCURRENCY=4 sends in parallel, then exits 0."""
    app = app
    smtp_server.mode, smtp_server.delay = "delay", 1.0
    queue_submissions(app, count=8)
    process = flask_command("outbox", "work", "--once", log=tmp_path / "work.log",
                            env=worker_env(app, DELIVERY_CONCURRENCY=4, MAIL_TIMEOUT=10))
    try:
        assert process.wait(30) == 0
    finally:
        stop_process(process)
    assert statuses(app)["sent"] == 8
    assert smtp_server.peak_concurrent_data >= 3
    assert each_sent_once(app, smtp_server)


@pytest.mark.manual_delivery
@pytest.mark.each_database
@pytest.mark.timeout(60)
def test_sigterm_to_a_pool_finishes_the_mails_in_hand_and_gives_the_rest_back_at_once(
        app, smtp_server, tmp_path):
    """Four loops each sending a mail when told to stop: those four finish, the waiting
    ones are queued again at once, with no attempt counted."""
    app = app
    smtp_server.mode, smtp_server.delay = "delay", 4.0
    queue_submissions(app, count=8)
    process = flask_command("outbox", "work", log=tmp_path / "work.log",
                            env=worker_env(app, DELIVERY_CONCURRENCY=4, MAIL_TIMEOUT=20))
    try:
        wait_until(lambda: smtp_server.data_commands >= 4, 30, "four mails in flight at once")
        os.kill(process.pid, signal.SIGTERM)
        wait_until(lambda: sum(r.status == "queued" and r.claim_token is None
                               for r in rows(app)) == 8 - smtp_server.data_commands,
                   3, "the waiting mails given back")
        assert process.wait(20) == 0
    finally:
        stop_process(process)
    found = rows(app)
    assert sorted(r.status for r in found) == ["queued"] * 4 + ["sent"] * 4
    assert all(r.attempts == 0 for r in found if r.status == "queued")
    received = Counter(mail.message["Message-ID"] for mail in smtp_server.messages)
    assert received == Counter(r.message_id for r in found if r.status == "sent")
