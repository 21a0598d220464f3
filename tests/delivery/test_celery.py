"""DELIVERY_BACKEND=celery: a real `celery worker` on the real Redis delivers the outbox."""

from __future__ import annotations

import io
import os
import signal
import subprocess
from collections import Counter
from email.message import Message
from pathlib import Path

import pytest
from flask import Flask

from contact_site.delivery import celery as backend
from contact_site.delivery.backend import backend_of
from contact_site.delivery.models import MailKind, OutboxMail, Status
from contact_site.extensions import db
from contact_site.submissions.models import SubmissionFile
from support.factories import queue_submissions
from support.forms import post_form
from support.outbox import row, rows, statuses
from support.processes import BROKER_URL, CELERY, PROJECT_ROOT, stop_process, worker_env
from support.waiting import wait_until

# The web side with the Celery backend: requests only queue tasks.
pytestmark = [pytest.mark.each_database,
              pytest.mark.settings(DELIVERY_BACKEND="celery", CELERY_BROKER_URL=BROKER_URL)]


def start_worker(app: Flask, log: Path) -> subprocess.Popen[bytes]:
    """`celery -A contact_site.celery_app worker` for this app's database, as a subprocess."""
    scanning = {"CONTACT_CLAMD": app.config["CONTACT_CLAMD"],
                "CONTACT_SCAN_TIMEOUT": app.config["CONTACT_SCAN_TIMEOUT"]}
    env = worker_env(app, DELIVERY_BACKEND="celery", CELERY_BROKER_URL=BROKER_URL,
                     DELIVERY_CLAIM_SECONDS=5,
                     **(scanning if app.config["CONTACT_CLAMD"] else {}))
    with log.open("ab") as out:
        return subprocess.Popen(
            [CELERY, "-A", "contact_site.celery_app", "worker", "--concurrency", "1",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


@pytest.fixture
def celery_worker(app, tmp_path, redis_broker):
    """The worker for the test's app, stopped by its PID."""
    log = tmp_path / "celery.log"
    process = start_worker(app, log)
    yield process
    assert stop_process(process, timeout=20) is not None
    assert "contact_site.deliver_due" in log.read_text(), "the worker ran no task"


@pytest.mark.usefixtures("redis_broker")
def test_the_backend_is_the_celery_waker(app):
    assert isinstance(backend_of(app), backend.CeleryBackend)
    settings = app.extensions["celery"].conf
    assert settings.task_acks_late and settings.task_reject_on_worker_lost
    assert settings.broker_transport_options["visibility_timeout"] > backend.TASK_BUDGET_SECONDS


@pytest.mark.timeout(90)
def test_worker_delivers_a_submission(app, celery_worker, smtp_server):
    """A POST queues a task; the worker process sends both mails."""
    response = post_form(app.test_client())
    assert response.status_code == 303
    smtp_server.wait_for(2, timeout=60)
    wait_until(lambda: statuses(app)["sent"] == 2, 15, "both mails recorded as sent")


@pytest.mark.timeout(90)
def test_worker_retries_a_greylisted_mail_and_picks_up_waiting_ones(
        app, smtp_server, celery_worker):
    """Mails queued before the worker starts, and a 451'd retry, are found by its sweep."""
    smtp_server.mode, smtp_server.fail_times = "451", 1
    first, second = queue_submissions(app, count=2)
    smtp_server.wait_for(2, timeout=60)
    wait_until(lambda: statuses(app)["sent"] == 2, 15, "both mails recorded as sent")
    assert {row(app, first).attempts, row(app, second).attempts} == {1, 2}


def test_wake_without_a_broker_leaves_the_mails_queued(make_app, caplog):
    """With the broker's port closed the request still succeeds; the mails wait in the database."""
    app = make_app(DELIVERY_BACKEND="celery", CELERY_BROKER_URL="redis://127.0.0.1:1/0")
    assert post_form(app.test_client()).status_code == 303
    assert statuses(app)["queued"] == 2
    # The wake-up runs off the request path (contact/waker.py): its failure is logged soon after.
    wait_until(lambda: "could not queue deliver_due" in caplog.text, 10, "the failed wake-up")


def pool_children(process: subprocess.Popen[bytes]) -> list[int]:
    """The PIDs of a worker's pool processes (its children)."""
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text()
    return [int(pid) for pid in children.split()]


@pytest.mark.timeout(90)
def test_pool_process_killed_mid_send_loses_nothing(app, smtp_server, celery_worker):
    """SIGKILL of the process running the task: every mail still arrives, once per
    Message-ID except perhaps the one in flight."""
    smtp_server.mode, smtp_server.delay = "delay", 1.0
    queue_submissions(app, count=3)
    wait_until(lambda: len(pool_children(celery_worker)) == 1, 30, "the worker's pool process")
    wait_until(lambda: smtp_server.data_commands >= 1, 30, "the first mail's DATA")
    os.kill(pool_children(celery_worker)[0], signal.SIGKILL)
    smtp_server.mode = "accept"
    wait_until(lambda: statuses(app)["sent"] == 3, 40, "every mail sent after the kill")
    copies = Counter(mail.message["Message-ID"] for mail in smtp_server.messages)
    assert set(copies) == {r.message_id for r in rows(app)}
    assert sum(copies.values()) <= 4


@pytest.mark.timeout(120)
def test_the_worker_scans_files_and_holds_the_mail_while_clamd_is_away(
        make_app, database_url, tmp_path, redis_broker, clamd, smtp_server):
    """Scanning lives in the worker on this backend too: an infected file is withheld with
    its signature; with clamd stopped the next owner's mail waits, its file pending, and
    goes with the file attached once clamd is back."""
    app = make_app(deliver=False, DATABASE_URL=database_url, DELIVERY_BACKEND="celery",
                   CELERY_BROKER_URL=BROKER_URL, CONTACT_CLAMD=clamd.tcp_address,
                   CONTACT_SCAN_TIMEOUT=2)
    clean = b"Notes on the analytical engine.\n"
    process = start_worker(app, tmp_path / "celery.log")
    try:
        infected = post_form(app.test_client(), attachment=(
            io.BytesIO(b"hello " + clamd.marker + b"\n"), "virus.txt"))
        assert infected.status_code == 303
        first = owner_copies(smtp_server, 1)[0]
        assert [part.get_filename() for part in first.iter_attachments()] == []
        assert clamd.signature in " ".join(str(first.get_body(("plain",))).split())

        clamd.stop()
        assert post_form(app.test_client(), attachment=(
            io.BytesIO(clean), "notes.txt")).status_code == 303
        wait_until(lambda: held(app), 30, "the second owner's mail held with its file pending")
        assert len(owner_copies(smtp_server, 0)) == 1
        clamd.start()
        second = owner_copies(smtp_server, 2)[1]
        assert {part.get_filename(): part.get_payload(decode=True)
                for part in second.iter_attachments()} == {"notes.txt": clean}
        with app.app_context():
            assert sorted(db.session.scalars(db.select(SubmissionFile.scan_state))) == [
                "clean", "infected"]
    finally:
        assert stop_process(process, timeout=20) is not None


def owner_copies(smtp_server, count: int) -> list[Message]:
    """The owner's mails received so far, waiting until there are `count`."""
    def found() -> list[Message]:
        return [m.message for m in smtp_server.messages if "sales@example.com" in m.rcpt_tos]
    wait_until(lambda: len(found()) >= count, 60, f"{count} owner's mails")
    return found()


def held(app: Flask) -> bool:
    """Whether an owner's mail is queued after an attempt that said it waits for the scan."""
    with app.app_context():
        return any(mail.kind == MailKind.OWNER and mail.status == Status.QUEUED
                   and "held until its files are scanned" in (mail.last_error or "")
                   for mail in db.session.scalars(db.select(OutboxMail)))
