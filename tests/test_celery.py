"""DELIVERY_BACKEND=celery: a real `celery worker` on the real Redis delivers the outbox."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import post_form, skip_or_fail
from delivery_helpers import (
    PROJECT_ROOT,
    queue_submissions,
    row,
    rows,
    statuses,
    stop_process,
    wait_until,
    worker_env,
)

from contact_site.delivery import celery as backend

# A database of its own on the shared Redis, so these tasks meet only these workers.
BROKER_URL = "redis://127.0.0.1:6379/11"
CELERY = str(Path(sys.executable).with_name("celery"))


@pytest.fixture(scope="module")
def redis_broker() -> str:
    """The broker URL, or a skip (a failure under CI=true) when Redis is absent."""
    import redis

    client = redis.Redis.from_url(BROKER_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as error:
        skip_or_fail(f"Redis unreachable at {BROKER_URL}: {error}")
    finally:
        client.close()
    return BROKER_URL


@pytest.fixture
def app(database_url, redis_broker, make_app):
    """The web side with the Celery backend: requests only queue tasks."""
    return make_app(DATABASE_URL=database_url, DELIVERY_BACKEND="celery",
                    CELERY_BROKER_URL=redis_broker)


@pytest.fixture
def celery_worker(app, tmp_path):
    """`celery -A contact_site.celery_app worker` as a subprocess, stopped by its PID."""
    log = tmp_path / "celery.log"
    env = worker_env(app, DELIVERY_BACKEND="celery", CELERY_BROKER_URL=BROKER_URL,
                     DELIVERY_CLAIM_SECONDS=5)
    with log.open("ab") as out:
        process = subprocess.Popen(
            [CELERY, "-A", "contact_site.celery_app", "worker", "--concurrency", "1",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    yield process
    assert stop_process(process, timeout=20) is not None
    assert "contact_site.deliver_due" in log.read_text(), "the worker ran no task"


def test_the_backend_is_the_celery_waker(app):
    assert isinstance(app.extensions["contact_delivery"], backend.CeleryBackend)
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
