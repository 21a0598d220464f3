"""Removal is final: erasure, deletion and retention stop every mail of what they remove that
has not been handed to the SMTP server yet, those a running batch holds included.

A slow server sits on the first mail's DATA while the batch that claimed it holds the
erased visitor's other mails, marked in hand; the removal happens then. What the server
receives is parsed: of the removed mails only the one on the wire arrives, and the report
says which were cancelled and which were already being handed to the server.
"""

from __future__ import annotations

import re
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import func, select

from contact_site.database import utcnow
from contact_site.delivery import lease, worker
from contact_site.delivery.models import OutboxMail
from contact_site.delivery.pool import pool_of
from contact_site.extensions import db
from contact_site.records import privacy
from support.admin import OWNER, PASSWORD, TOKEN, create_owner
from support.factories import create_submissions
from support.outbox import rows, statuses
from support.processes import CELERY, FLASK, PROJECT_ROOT, start_gunicorn, stop_process, worker_env
from support.smtp_server import SMTPTestServer
from support.waiting import wait_until

# A test using database_url or app runs on SQLite, then on PostgreSQL.
pytestmark = pytest.mark.each_database

ERASED = "erased.visitor@example.com"
OTHER = "other.visitor@example.com"
WARM = "warm.up@example.com"
DATA_SECONDS = 8.0  # how long the slow server sits on each DATA before its 250 (the
# removal, a command started in a process of its own included, comes well within it)
ERASE_REPORT = "3 cancelled, 1 already being handed to the server"


def queue(app: Flask, senders: list[tuple[str, float]]) -> list[str]:
    """Store one submission per (address, days old), each with its owner's mail and
    thank-you, in one commit (one claim takes them all); their ids."""
    each = [{"email": email, "created_at": utcnow() - timedelta(days=days_old),
             "subject": f"Subject {number}"} for number, (email, days_old) in enumerate(senders)]
    stored = create_submissions(app, each=each, name="A visitor", thank_you=True,
                                message="About the analytical engine.")
    return [submission_id for submission_id, _mails in stored]


def message_ids(app: Flask, submission_ids: list[str]) -> list[str]:
    """The Message-IDs of these submissions' mails, in the order a worker claims them."""
    return [r.message_id for r in rows(app) if r.submission_id in submission_ids]


def received_ids(server: SMTPTestServer) -> list[str]:
    """The Message-ID of every mail the server accepted, parsed from what it received."""
    return [str(mail.message["Message-ID"]) for mail in server.messages]


def marked_in_hand(app: Flask, submission_ids: list[str]) -> int:
    """How many mails of these submissions a worker has marked in hand."""
    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(OutboxMail).where(
            OutboxMail.submission_id.in_(submission_ids),
            OutboxMail.send_started_at.is_not(None)))
        db.session.commit()
        return int(count or 0)


def flask_cli(app: Flask, *args: str) -> str:
    """`flask --app contact_site ARGS` in a process of its own, on this app's database."""
    done = subprocess.run([FLASK, "--app", "contact_site", *args], cwd=PROJECT_ROOT,
                          env=worker_env(app), capture_output=True, text=True, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


class Console:
    """The owner's console over HTTP, signed in, as a browser would use it."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(
            CookieJar()))

    def get(self, path: str) -> str:
        """The page at `path`."""
        with self.opener.open(self.base + path, timeout=30) as response:
            return str(response.read().decode())

    def post(self, path: str, form_page: str, **fields: str) -> str:
        """Submit a form with the CSRF token of `form_page`; the page it redirects to."""
        token = TOKEN.search(self.get(form_page))
        assert token, f"{form_page} has no CSRF token"
        body = urllib.parse.urlencode({"csrf_token": token.group(1), **fields}).encode()
        with self.opener.open(self.base + path, data=body, timeout=60) as response:
            return str(response.read().decode())

    def sign_in(self) -> None:
        """Sign in as the owner."""
        page = self.post("/admin/login", "/admin/login", username=OWNER, password=PASSWORD)
        assert "/admin/logout" in page, "not signed in"


@pytest.fixture
def race_app(make_app: Callable[..., Flask], database_url: str) -> Flask:
    """The test's own view of the database (it delivers nothing), with an owner's account."""
    app = make_app(deliver=False, DATABASE_URL=database_url)
    create_owner(app)
    return app


def delivery_settings() -> dict[str, Any]:
    """One delivery loop that claims whole batches, and a timeout longer than the slow DATA."""
    return {"DELIVERY_CONCURRENCY": 1, "MAIL_TIMEOUT": 30}


@pytest.fixture
def site(race_app: Flask, tmp_path: Path) -> Iterator[int]:
    """The product under gunicorn (one worker process, its delivery thread); its port."""
    process, log, port = start_gunicorn(race_app, tmp_path, "--workers", "1",
                                        **delivery_settings())
    try:
        yield port
    finally:
        stop_process(process, timeout=30)
        assert "Traceback" not in log.read_text(), log.read_text()


@pytest.fixture
def celery_worker(race_app: Flask, tmp_path: Path,
                  redis_broker: str) -> Iterator[subprocess.Popen[bytes]]:
    """A real `celery worker` (one pool process) on the real Redis, delivering the outbox."""
    env = worker_env(race_app, DELIVERY_BACKEND="celery", CELERY_BROKER_URL=redis_broker,
                     **delivery_settings())
    log = tmp_path / "celery.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [CELERY, "-A", "contact_site.celery_app", "worker", "--concurrency", "1",
             "--without-gossip", "--without-mingle", "--without-heartbeat"],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        stop_process(process, timeout=20)


def warm_up(app: Flask, server: SMTPTestServer) -> None:
    """A few fast mails first: the worker then marks a whole claim in hand at once (group
    commit), as a busy site's worker does when its server suddenly slows down."""
    queue(app, [(WARM, 0)] * 3)
    wait_until(lambda: len(server.messages) == 6, 60, "the warm-up mails")
    wait_until(lambda: statuses(app)["sent"] == 6, 15, "the warm-up mails recorded")


def slow_batch(app: Flask, server: SMTPTestServer, visitors: list[str],
               days_old: float = 0) -> tuple[list[str], list[str]]:
    """The slow server; the erased visitor's submissions and another's, claimed by one batch,
    its first mail in DATA and, after a second, the ones behind it no longer marked."""
    server.mode, server.delay = "delay", DATA_SECONDS
    stored = queue(app, [(visitor, days_old) for visitor in visitors] + [(OTHER, 0)])
    doomed, others = stored[:len(visitors)], stored[len(visitors):]
    wait_until(lambda: server.data_commands == 7, 30, "the first mail in DATA")
    # The worker's heartbeat unmarks the mails behind a long send (lease.py): then the
    # removal counts only the one in DATA as in hand. Were it not to, the mails would be
    # stopped all the same, and the report asserted afterwards would say so.
    deadline = time.monotonic() + DATA_SECONDS / 2
    while marked_in_hand(app, doomed) > 1 and time.monotonic() < deadline:
        time.sleep(0.1)
    return doomed, others


def assert_final(app: Flask, server: SMTPTestServer, doomed_mails: list[str],
                 kept: int) -> None:
    """Once the rest is delivered: of the removed mails only the first, on the wire when
    they were removed, reached the server; nothing else is left to send."""
    server.mode = "accept"
    wait_until(lambda: statuses(app)["sent"] == 6 + kept and statuses(app)["queued"] == 0
               and statuses(app)["sending"] == 0, 60, "the other mails delivered")
    arrived = received_ids(server)
    assert [mail for mail in arrived if mail in doomed_mails] == doomed_mails[:1]
    assert len(arrived) == 6 + 1 + kept, "each remaining mail once, nothing more"


@pytest.mark.timeout(150)
@pytest.mark.parametrize("delivery", ["gunicorn", "celery"])
def test_erase_command_stops_the_mails_a_running_batch_holds(
        race_app: Flask, smtp_server: SMTPTestServer, delivery: str,
        request: pytest.FixtureRequest) -> None:
    """`submissions erase` while the visitor's first mail is in DATA: the three behind it
    never reach the server, and the command says one was already being handed to it."""
    request.getfixturevalue("site" if delivery == "gunicorn" else "celery_worker")
    warm_up(race_app, smtp_server)
    doomed, _others = slow_batch(race_app, smtp_server, [ERASED, ERASED.upper()])
    doomed_mails = message_ids(race_app, doomed)
    said = flask_cli(race_app, "submissions", "erase", ERASED)
    assert_final(race_app, smtp_server, doomed_mails, kept=2)
    assert "erased 2 submission(s), 4 mail(s)" in said and ERASE_REPORT in said, said


@pytest.mark.timeout(150)
def test_console_erasure_stops_the_mails_a_running_batch_holds(
        race_app: Flask, smtp_server: SMTPTestServer, site: int) -> None:
    """/admin/erase during the first mail's DATA: the same, said on the console's page."""
    console = Console(site)
    console.sign_in()
    warm_up(race_app, smtp_server)
    doomed, _others = slow_batch(race_app, smtp_server, [ERASED, ERASED])
    doomed_mails = message_ids(race_app, doomed)
    page = console.post("/admin/erase", "/admin/erase", address=ERASED)
    assert_final(race_app, smtp_server, doomed_mails, kept=2)
    assert ERASE_REPORT in page, re.sub(r"\s+", " ", page)[:2000]


@pytest.mark.timeout(150)
def test_console_delete_stops_the_mails_a_running_batch_holds(
        race_app: Flask, smtp_server: SMTPTestServer, site: int) -> None:
    """…/delete of the submission whose owner's mail is in DATA: its thank-you never goes;
    the visitor's other submission is delivered as usual."""
    console = Console(site)
    console.sign_in()
    warm_up(race_app, smtp_server)
    doomed, _others = slow_batch(race_app, smtp_server, [ERASED, ERASED])
    first = doomed[:1]
    doomed_mails = message_ids(race_app, first)
    page = console.post(f"/admin/submissions/{first[0]}/delete",
                        f"/admin/submissions/{first[0]}")
    assert_final(race_app, smtp_server, doomed_mails, kept=4)
    assert "1 cancelled, 1 already being handed to the server" in page, \
        re.sub(r"\s+", " ", page)[:2000]


@pytest.mark.timeout(150)
def test_retention_purge_stops_the_mails_a_running_batch_holds(
        race_app: Flask, smtp_server: SMTPTestServer, site: int) -> None:
    """`submissions purge` of old submissions whose first mail is in DATA: the same."""
    warm_up(race_app, smtp_server)
    days = race_app.config["CONTACT_RETENTION_DAYS"] + 1
    doomed, _others = slow_batch(race_app, smtp_server, [ERASED, ERASED], days_old=days)
    doomed_mails = message_ids(race_app, doomed)
    said = flask_cli(race_app, "submissions", "purge")
    assert_final(race_app, smtp_server, doomed_mails, kept=2)
    assert "purged 2 old submission(s)" in said and ERASE_REPORT in said, said


@pytest.mark.manual_delivery
@pytest.mark.each_database
@pytest.mark.timeout(60)
def test_a_mail_marked_in_hand_is_checked_once_more_before_mail_from(
        app: Flask, smtp_server: SMTPTestServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """Erased at once, before any unmarking: every mail of the batch was marked in hand by
    its claim, so the erasure can only count them as in hand, and the worker's last check
    before MAIL FROM is what keeps the three not yet started from the server."""
    monkeypatch.setattr(lease, "UNMARK_AFTER_SECONDS", 3600.0, raising=False)
    app = app
    pool_of(app).sent_in(0.001)  # a fast server so far: one claim marks six mails
    smtp_server.mode, smtp_server.delay = "delay", 2.0
    doomed = queue(app, [(ERASED, 0), (ERASED, 0), (OTHER, 0)])[:2]
    doomed_mails = message_ids(app, doomed)
    assert marked_in_hand(app, doomed) == 0

    def deliver() -> None:
        with app.app_context():
            worker.claim_and_deliver(limit=6)

    sender = threading.Thread(target=deliver)
    sender.start()
    try:
        wait_until(lambda: smtp_server.data_commands == 1, 20, "the first mail in DATA")
        with app.app_context():
            erasure = privacy.erase_address(ERASED)
        smtp_server.mode = "accept"
    finally:
        sender.join(30)
    arrived = received_ids(smtp_server)
    assert [mail for mail in arrived if mail in doomed_mails] == doomed_mails[:1]
    assert len(arrived) == 3 and statuses(app)["sent"] == 2
    assert (erasure.mails, erasure.cancelled, getattr(erasure, "in_flight", None)) == (4, 0, 4)
