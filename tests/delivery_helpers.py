"""Helpers shared by the delivery tests: queueing mails, reading the outbox, worker processes."""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from conftest import RECIPIENTS
from flask import Flask
from sqlalchemy import select, update

from contact_site.database import utcnow
from contact_site.delivery import outbox, worker
from contact_site.delivery.models import OutboxMail, Status
from contact_site.extensions import db
from contact_site.submissions.models import Submission

PROJECT_ROOT = Path(__file__).resolve().parent.parent
FLASK = str(Path(sys.executable).with_name("flask"))
SECRET = "test-secret-key-for-worker-processes"
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def queue_submissions(app: Flask, count: int = 1, thank_you: bool = False,
                      attachment: bytes | None = None,
                      message: str = "Hello,\nabout the analytical engine.") -> list[int]:
    """Store `count` submissions and their mails in one commit; the outbox ids."""
    with app.app_context():
        recipient = app.config["CONTACT_RECIPIENTS"][0]
        rows: list[OutboxMail] = []
        for number in range(count):
            submission = Submission(
                id=uuid.uuid4().hex, submission_key=uuid.uuid4().hex, recipient_slug=recipient.slug,
                recipient_name=recipient.name, recipient_address=recipient.address,
                name="Ada Lovelace", email="ada@example.com", subject=f"Engines {number}",
                message=message, thank_you_sent=thank_you,
            )
            if attachment is not None:
                _attach(app, submission, attachment)
            db.session.add(submission)
            rows.extend(outbox.enqueue_submission(submission))
        db.session.commit()
        return [row.id for row in rows]


def _attach(app: Flask, submission: Submission, data: bytes) -> None:
    """Store `data` as the submission's upload, as the upload code would."""
    folder = Path(app.config["UPLOAD_FOLDER"]) / submission.id
    folder.mkdir(parents=True)
    (folder / "attachment.pdf").write_bytes(data)
    submission.attachment_path = f"{submission.id}/attachment.pdf"
    submission.attachment_name = "report.pdf"
    submission.attachment_type = "application/pdf"
    submission.attachment_size = len(data)


def rows(app: Flask) -> list[OutboxMail]:
    """Every outbox row, by id, detached from the session."""
    with app.app_context():
        found = list(db.session.scalars(select(OutboxMail).order_by(OutboxMail.id)))
        db.session.expunge_all()
        return found


def row(app: Flask, mail_id: int) -> OutboxMail:
    """One outbox row, detached."""
    return next(r for r in rows(app) if r.id == mail_id)


def make_due(app: Flask) -> None:
    """Bring every queued mail's next attempt to now, instead of waiting out the backoff."""
    with app.app_context():
        db.session.execute(update(OutboxMail).where(OutboxMail.status == Status.QUEUED)
                           .values(next_attempt_at=utcnow() - timedelta(seconds=1)))
        db.session.commit()


def deliver_now(app: Flask) -> int:
    """One delivery pass, as a worker would run it; the number of mails claimed."""
    with app.app_context():
        return worker.deliver_due()


def wait_until(condition: Callable[[], bool], timeout: float, what: str,
               step: float = 0.1) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def statuses(app: Flask) -> dict[str, int]:
    """Outbox counts by status."""
    with app.app_context():
        return outbox.status_counts()


def worker_env(app: Flask, **extra: Any) -> dict[str, str]:
    """The environment a worker process needs to share this app's database and mail server."""
    config = app.config
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLASK_")}
    env.update({
        "SECRET_KEY": SECRET, "DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
        "UPLOAD_FOLDER": config["UPLOAD_FOLDER"], "MAIL_SERVER": config["MAIL_SERVER"],
        "MAIL_PORT": str(config["MAIL_PORT"]), "MAIL_TIMEOUT": str(config["MAIL_TIMEOUT"]),
        "MAIL_DEFAULT_SENDER": config["MAIL_DEFAULT_SENDER"], "CONTACT_RECIPIENTS": RECIPIENTS,
        "CONTACT_RATE_LIMIT": "off", "DELIVERY_RETRY_BASE_SECONDS": "1",
        "DELIVERY_RETRY_MAX_SECONDS": "2", "DELIVERY_POLL_SECONDS": "1",
        # One loop per process: these tests count DATA commands and claims one
        # connection at a time; the pool has its own (tests/test_parallel_delivery.py).
        "DELIVERY_CONCURRENCY": "1",
        "PYTHONUNBUFFERED": "1",
    })
    env.update({key: str(value) for key, value in extra.items()})
    return env


def flask_command(*args: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """Start `flask --app contact_site <args>` in the project folder, output to `log`."""
    with log.open("ab") as out:
        return subprocess.Popen([FLASK, "--app", "contact_site", *args], cwd=PROJECT_ROOT,
                                env=env, stdout=out, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 10.0) -> int | None:
    """Stop one process we started, by its PID: SIGTERM, then SIGKILL if it lingers."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout)
    return process.returncode


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_gunicorn(app: Any, tmp_path: Path, *args: str, wait: bool = True,
                   **settings: Any) -> tuple[subprocess.Popen[bytes], Path, int]:
    """gunicorn as an operator runs it (gunicorn.conf.py from the project folder), with a
    HOME of its own (TRAPS.md: the control socket); the process, its log and its port."""
    home = tmp_path / f"home-{uuid.uuid4().hex[:8]}"
    home.mkdir()
    port = free_port()
    log = tmp_path / f"gunicorn-{port}.log"
    env = {**worker_env(app, **settings), "HOME": str(home)}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [GUNICORN, "--bind", f"127.0.0.1:{port}", "--workers", "2", *args,
             "contact_site:create_app()"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    if wait:
        wait_until(lambda: _answers(port) or process.poll() is not None, 30, "gunicorn to serve")
        assert process.poll() is None, log.read_text()
    return process, log, port


def _answers(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/healthz")
        return connection.getresponse().status in {200, 503}
    except OSError:
        return False
    finally:
        connection.close()


def form_page(port: int) -> tuple[str, dict[str, str]]:
    """The session cookie and the hidden fields of a freshly served form."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        page = response.read().decode()
    finally:
        connection.close()
    cookie = response.getheader("Set-Cookie", "").split(";", 1)[0]
    pattern = r'name="(csrf_token|submission_key)" type="hidden" value="([^"]+)"'
    return cookie, dict(re.findall(pattern, page))
