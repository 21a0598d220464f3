"""Stopping gives work back: gunicorn, `outbox work` and Celery release unsent claims at once."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections import Counter

import pytest

from contact_site.delivery import lease
from support.factories import queue_submissions
from support.outbox import rows, statuses
from support.processes import (
    BROKER_URL,
    CELERY,
    PROJECT_ROOT,
    flask_command,
    start_gunicorn,
    worker_env,
)
from support.waiting import wait_until

# The test's own view of the database: it queues and inspects, never delivers.
pytestmark = [pytest.mark.manual_delivery, pytest.mark.each_database]


def waiting_given_back(app, sent: int) -> bool:
    """Every mail but those sent is queued again, with no claim."""
    found = rows(app)
    return all(r.status == "queued" and r.claim_token is None for r in found[sent:])


@pytest.mark.timeout(90)
def test_sigterm_to_gunicorn_mid_batch_gives_the_rest_back_and_a_restart_delivers_them(
        app, smtp_server, tmp_path, processes):
    """The mail in hand is finished, the others are queued at once; the next start sends
    them within seconds, the mail in flight at most twice."""
    queue_submissions(app, count=6)
    smtp_server.mode, smtp_server.delay = "delay", 3.0
    first, log, _port = start_gunicorn(app, tmp_path, MAIL_TIMEOUT=20)
    processes.append(first)
    wait_until(lambda: smtp_server.data_commands == 2, 30, "the second mail's DATA")
    os.kill(first.pid, signal.SIGTERM)
    wait_until(lambda: waiting_given_back(app, 2), 5, "the unsent mails given back")
    assert first.wait(30) == 0
    assert statuses(app) == {"queued": 4, "sending": 0, "sent": 2, "failed": 0}
    assert "gave back 4 unsent mail(s)" in log.read_text()

    smtp_server.mode = "accept"
    started = time.monotonic()
    processes.append(start_gunicorn(app, tmp_path)[0])
    wait_until(lambda: statuses(app)["sent"] == 6, 20, "the rest sent after the restart")
    assert time.monotonic() - started < 20
    copies = Counter(mail.message["Message-ID"] for mail in smtp_server.messages)
    assert set(copies) == {r.message_id for r in rows(app)}
    assert max(copies.values()) == 1


@pytest.mark.timeout(60)
def test_sigterm_to_outbox_work_releases_the_waiting_claims_before_the_mail_in_hand_ends(
        app, smtp_server, tmp_path, processes):
    queue_submissions(app, count=4)
    smtp_server.mode, smtp_server.delay = "delay", 6.0
    process = flask_command("outbox", "work", log=tmp_path / "work.log",
                            env=worker_env(app, MAIL_TIMEOUT=20))
    processes.append(process)
    wait_until(lambda: smtp_server.data_commands == 1, 45, "the first mail's DATA")
    os.kill(process.pid, signal.SIGTERM)
    wait_until(lambda: waiting_given_back(app, 1), 3, "the three waiting mails given back")
    assert rows(app)[0].status == "sending", "the mail in hand is still being sent"
    assert process.wait(20) == 0
    assert [r.status for r in rows(app)] == ["sent", "queued", "queued", "queued"]


@pytest.mark.timeout(60)
def test_a_stopping_worker_abandons_a_mail_that_outlasts_the_grace_and_gives_it_back(
        app, smtp_server, tmp_path, processes):
    (mail_id,) = queue_submissions(app)
    smtp_server.mode, smtp_server.delay = "delay", 40.0
    process = flask_command("outbox", "work", log=tmp_path / "work.log",
                            env=worker_env(app, MAIL_TIMEOUT=60))
    processes.append(process)
    wait_until(lambda: smtp_server.data_commands == 1, 45, "the mail's DATA")
    stopped = time.monotonic()
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(lease.STOP_GRACE_SECONDS + 10) == 0
    assert time.monotonic() - stopped < lease.STOP_GRACE_SECONDS + 5
    (abandoned,) = rows(app)
    assert (abandoned.status, abandoned.attempts, abandoned.claim_token) == ("queued", 0, None)
    assert smtp_server.messages == []


@pytest.mark.timeout(90)
def test_a_celery_worker_told_to_stop_gives_its_unsent_claims_back(
        app, smtp_server, tmp_path, processes, redis_broker):
    queue_submissions(app, count=4)
    smtp_server.mode, smtp_server.delay = "delay", 5.0
    log = tmp_path / "celery.log"
    env = worker_env(app, DELIVERY_BACKEND="celery", CELERY_BROKER_URL=BROKER_URL,
                     MAIL_TIMEOUT=20)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [CELERY, "-A", "contact_site.celery_app", "worker", "--concurrency", "1",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    processes.append(process)
    wait_until(lambda: smtp_server.data_commands == 1, 45, "the first mail's DATA")
    os.kill(process.pid, signal.SIGTERM)
    wait_until(lambda: waiting_given_back(app, 1), 4, "the three waiting mails given back")
    assert process.wait(30) == 0
    assert [r.status for r in rows(app)] == ["sent", "queued", "queued", "queued"]
    assert "gave back 3 unsent mail(s)" in log.read_text()
