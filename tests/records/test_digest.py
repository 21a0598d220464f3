"""The daily digest (CONTACT_DIGEST=daily): each recipient's morning mail, queued once a day
across processes, naming messages by subject and link only, read when it is sent."""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from email.message import EmailMessage
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import insert, select, update

from contact_site import create_app
from contact_site.config import ConfigError
from contact_site.database import utcnow
from contact_site.delivery.models import DeliveryAttempt, MailKind, OutboxMail, Status
from contact_site.delivery.worker import run_daily_jobs
from contact_site.extensions import db
from contact_site.records import digest
from contact_site.records.models import MaintenanceRun
from contact_site.records.privacy import erase_address
from contact_site.records.retention import purge
from contact_site.submissions.models import READ, Submission
from contact_site.webhooks.chat import CONSOLE_DETAIL
from support.factories import create_submission
from support.outbox import deliver_now, rows
from support.processes import FLASK, PROJECT_ROOT, worker_env
from support.records import age
from support.settings import base_config, skip_or_fail
from support.smtp_server import ReceivedMail, SMTPTestServer

DAY = timedelta(days=1)
BASE_URL = "https://contact.example.com"
TWO_RECIPIENTS = "Sales <sales@example.com>, Support <support@example.com>"
# Due from midnight UTC, to both recipients, with links into the console.
DIGEST_ON: dict[str, Any] = {
    "CONTACT_DIGEST": "daily", "CONTACT_DIGEST_HOUR": 0, "CONTACT_RECIPIENTS": TWO_RECIPIENTS,
    "CONTACT_BASE_URL": BASE_URL}
# A morning long after the test's real clock has nothing to do with it: send_if_due is given
# its `now`.
MORNING = datetime(2026, 5, 17, 9, 0)


def digest_rows(app: Flask) -> list[OutboxMail]:
    """The digests in the outbox, by id, detached."""
    return [row for row in rows(app) if row.kind == MailKind.DIGEST]


def digest_turn(app: Flask) -> datetime | None:
    """When a process last took the digest's turn, from its maintenance row."""
    with app.app_context():
        return db.session.scalar(select(MaintenanceRun.last_run).where(
            MaintenanceRun.name == digest.DIGEST))


def send_if_due(app: Flask, now: datetime) -> int | None:
    """The digest's turn asked for as of `now` in the app."""
    with app.app_context():
        return digest.send_if_due(now)


def received_digests(app: Flask, server: SMTPTestServer) -> dict[str, ReceivedMail]:
    """The digests the server received, by the address each was sent to."""
    ids = {row.message_id for row in digest_rows(app)}
    found: dict[str, ReceivedMail] = {}
    for mail in server.messages:
        if mail.message["Message-ID"] in ids:
            [address] = mail.rcpt_tos
            assert address not in found, f"two digests for {address}"
            found[address] = mail
    return found


def text_of(message: EmailMessage) -> str:
    """Every text part of the mail, decoded."""
    return "\n".join(str(part.get_content()) for part in message.walk()
                     if part.get_content_maintype() == "text")


def link(submission_id: str) -> str:
    """The message's page in the console, as CONTACT_BASE_URL makes it."""
    return BASE_URL + CONSOLE_DETAIL.format(id=submission_id)


def listed_with_link(text: str, subject: str, submission_id: str) -> bool:
    """The digest names the message by subject, its console link on the next line."""
    lines = text.splitlines()
    return any(line.startswith(f"- {subject} (") and lines[n + 1].strip() == link(submission_id)
               for n, line in enumerate(lines[:-1]))


def test_each_recipient_gets_the_morning_digest_under_a_moved_clock(
        make_app: Callable[..., Flask], smtp_server: SMTPTestServer) -> None:
    """A day on, a worker sends each recipient one digest: what arrived, waits, failed."""
    if shutil.which("faketime") is None:
        skip_or_fail("faketime is not installed (apt-get install faketime)")
    app = make_app(deliver=False, **DIGEST_ON)
    with app.app_context():  # this morning's digest was sent just now
        db.session.execute(insert(MaintenanceRun).values(name=digest.DIGEST, last_run=utcnow()))
        db.session.commit()
    words = {"new": "Please quote NEWTEXT-7731 for us.", "waiting": "WAITTEXT-2214 spare gear.",
             "failing": "FAILTEXT-9055 lost invoice."}
    new = create_submission(app, subject="Quote for ten engines", message=words["new"],
                            name="Grace Hopper", email="grace@example.com")
    waiting = create_submission(app, subject="Spare parts", message=words["waiting"],
                                name="Grace Hopper", email="grace@example.com")
    failing = create_submission(app, subject="Invoice copy", message=words["failing"],
                                name="Grace Hopper", email="grace@example.com")
    while deliver_now(app):
        pass
    age(app, waiting, 3)
    with app.app_context():
        db.session.execute(update(Submission).where(Submission.id == waiting).values(state=READ))
        db.session.execute(update(OutboxMail).where(OutboxMail.submission_id == failing).values(
            status=Status.FAILED, last_error="550 5.1.1 mailbox unavailable"))
        db.session.commit()
    assert send_if_due(app, utcnow()) is None  # on the real clock it is not due again
    smtp_server.messages.clear()
    # libfaketime: a faked monotonic clock hangs Python's timed waits (docs/stack-pitfalls.md).
    env = worker_env(app, FAKETIME_DONT_FAKE_MONOTONIC="1", **DIGEST_ON)
    for _run in range(2):  # the first queues the digests after its pass, the second sends them
        done = subprocess.run(["faketime", "-f", "+1d", FLASK, "--app", "contact_site",
                               "outbox", "work", "--once"], cwd=PROJECT_ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
    assert sorted((row.to_address, row.status, row.submission_id)
                  for row in digest_rows(app)) == [
        ("sales@example.com", Status.SENT, None), ("support@example.com", Status.SENT, None)]
    mails = received_digests(app, smtp_server)
    assert set(mails) == {"sales@example.com", "support@example.com"}
    for address, mail in mails.items():
        message = mail.message
        assert message["Auto-Submitted"] == "auto-generated"
        assert [(a.display_name, a.addr_spec) for a in message["To"].addresses] == [("", address)]
        assert [(a.display_name, a.addr_spec) for a in message["From"].addresses] == [
            ("Contact form", "noreply@example.org")]
        assert mail.mail_from == "noreply@example.org"
        text = text_of(message)
        for visitor in (*words.values(), "Grace Hopper", "grace@example.com"):
            assert visitor not in text and visitor.encode() not in mail.data
    sales, support = (text_of(mails[a].message) for a in ("sales@example.com",
                                                          "support@example.com"))
    assert mails["sales@example.com"].message["Subject"] == (
        "Your contact form today: 2 new message(s)")
    assert "2 messages arrived since" in sales
    assert listed_with_link(sales, "Quote for ten engines", new)
    assert "2 messages not opened yet." in sales
    assert "1 message waits for an answer for more than 2 days:" in sales
    assert listed_with_link(sales, "Spare parts", waiting)
    assert "1 mail or webhook could not be delivered:" in sales
    assert "- Owner’s mail: Invoice copy (550 5.1.1 mailbox unavailable)" in sales
    assert link(failing) in sales
    assert mails["support@example.com"].message["Subject"] == (
        "Your contact form today: 0 new message(s)")
    assert "Nothing arrived since" in support
    assert "0 messages not opened yet." in support
    assert "waits for an answer" not in support and "could not be delivered" not in support
    assert BASE_URL not in support


@pytest.mark.each_database
def test_the_morning_digest_is_queued_once_per_recipient(
        database_url: str, make_app: Callable[..., Flask]) -> None:
    """One turn a morning: asked again that day nothing is queued; the next morning it is."""
    app = make_app(deliver=False, DATABASE_URL=database_url, **DIGEST_ON)
    other = make_app(deliver=False, DATABASE_URL=database_url, **DIGEST_ON)
    next_morning = MORNING.replace(hour=0) + DAY
    turns = [send_if_due(app, MORNING), send_if_due(app, MORNING),
             send_if_due(other, MORNING), send_if_due(app, next_morning - timedelta(minutes=1))]
    assert turns == [2, None, None, None]
    assert sorted(row.to_address for row in digest_rows(app)) == [
        "sales@example.com", "support@example.com"]
    assert [send_if_due(other, next_morning), send_if_due(app, next_morning)] == [2, None]
    assert sorted(row.to_address for row in digest_rows(app)) == [
        "sales@example.com", "sales@example.com", "support@example.com", "support@example.com"]
    assert digest_turn(app) == next_morning


@pytest.mark.each_database
@pytest.mark.parametrize("first", [True, False], ids=["first-digest", "next-morning"])
def test_concurrent_digest_turns_queue_once(database_url: str, make_app: Callable[..., Flask],
                                            first: bool) -> None:
    """Eight threads of two apps asking the same morning: one queues, the others get None."""
    apps = [make_app(deliver=False, DATABASE_URL=database_url, **DIGEST_ON) for _ in range(2)]
    now = MORNING
    if not first:  # yesterday's digest was queued: the turn is the UPDATE of its row
        assert send_if_due(apps[0], MORNING - DAY) == 2
    before = len(digest_rows(apps[0]))
    barrier, results, lock = threading.Barrier(8), [], threading.Lock()

    def ask(app: Flask) -> None:
        with app.app_context():
            barrier.wait(10)
            outcome = digest.send_if_due(now)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=ask, args=(apps[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 8
    assert sorted(results, key=lambda r: r is None) == [2] + [None] * 7
    assert len(digest_rows(apps[0])) == before + 2


@pytest.mark.parametrize("settings, queued", [({}, 0), ({"CONTACT_DIGEST": "off"}, 0),
                                              ({"CONTACT_DIGEST": "daily"}, 2)],
                         ids=["default", "off", "daily"])
def test_the_delivery_loops_daily_jobs_queue_digests_only_when_daily(
        make_app: Callable[..., Flask], settings: dict[str, str], queued: int) -> None:
    """CONTACT_DIGEST is off by default: the daily jobs queue no digest and take no turn."""
    app = make_app(deliver=False, CONTACT_RECIPIENTS=TWO_RECIPIENTS, **settings)
    run_daily_jobs(app)
    assert len(digest_rows(app)) == queued
    assert (digest_turn(app) is not None) is bool(queued)


@pytest.mark.parametrize("zone, hour, now, due", [
    ("Asia/Shanghai", 8, datetime(2026, 5, 18, 0, 30), datetime(2026, 5, 18, 0, 0)),
    ("Asia/Shanghai", 8, datetime(2026, 5, 18, 0, 0), datetime(2026, 5, 18, 0, 0)),
    ("Asia/Shanghai", 8, datetime(2026, 5, 17, 23, 59), datetime(2026, 5, 17, 0, 0)),
    ("UTC", 8, datetime(2026, 5, 17, 7, 59), datetime(2026, 5, 16, 8, 0)),
    ("UTC", 8, datetime(2026, 5, 17, 8, 0), datetime(2026, 5, 17, 8, 0)),
    ("UTC", 0, datetime(2026, 5, 17, 0, 0), datetime(2026, 5, 17, 0, 0)),
    # The day summer time starts in New York: 08:00 EDT, the day before 08:00 EST.
    ("America/New_York", 8, datetime(2026, 3, 8, 13, 0), datetime(2026, 3, 8, 12, 0)),
    ("America/New_York", 8, datetime(2026, 3, 8, 11, 0), datetime(2026, 3, 7, 13, 0)),
])
def test_the_digest_is_due_at_the_hour_in_the_site_time_zone(
        make_app: Callable[..., Flask], zone: str, hour: int, now: datetime,
        due: datetime) -> None:
    """Due at CONTACT_DIGEST_HOUR in CONTACT_TIMEZONE; before the hour, the day before's."""
    app = make_app(deliver=False, CONTACT_TIMEZONE=zone, CONTACT_DIGEST_HOUR=hour)
    with app.app_context():
        assert digest.due_at(now) == due


@pytest.mark.each_database
def test_a_message_erased_after_the_digest_was_queued_is_not_named(
        database_url: str, make_app: Callable[..., Flask], smtp_server: SMTPTestServer) -> None:
    """The digest reads its messages when it is sent: one erased meanwhile is not in it."""
    app = make_app(deliver=False, DATABASE_URL=database_url, **DIGEST_ON)
    kept = create_submission(app, subject="Kept question", message="KEPTTEXT-1180")
    erased = create_submission(app, subject="Erased question", message="GONETEXT-5521",
                               email="erase-me@example.com")
    assert send_if_due(app, utcnow()) == 2
    [queued] = [row for row in digest_rows(app) if row.to_address == "sales@example.com"]
    assert queued.payload is not None and erased in queued.payload["arrived"]
    assert "GONETEXT" not in str(queued.payload) and "erase-me" not in str(queued.payload)
    with app.app_context():
        assert erase_address("erase-me@example.com").submissions == 1
    while deliver_now(app):
        pass
    mail = received_digests(app, smtp_server)["sales@example.com"]
    text = text_of(mail.message)
    assert listed_with_link(text, "Kept question", kept)
    assert "1 message arrived since" in text
    assert mail.message["Subject"] == "Your contact form today: 1 new message(s)"
    for trace in ("Erased question", erased, "GONETEXT", "erase-me@example.com"):
        assert trace not in text and trace.encode() not in mail.data


@pytest.mark.each_database
@pytest.mark.parametrize("days_later, kept", [(29, True), (31, False)])
def test_retention_deletes_digests_after_thirty_days(
        database_url: str, make_app: Callable[..., Flask], smtp_server: SMTPTestServer,
        days_later: int, kept: bool) -> None:
    """A digest sent or failed goes with its attempts 30 days on; a younger one stays."""
    app = make_app(deliver=False, DATABASE_URL=database_url, **DIGEST_ON)
    queued_at = utcnow()
    assert send_if_due(app, queued_at) == 2
    while deliver_now(app):
        pass
    sent, failed = digest_rows(app)
    with app.app_context():
        db.session.execute(update(OutboxMail).where(OutboxMail.id == failed.id).values(
            status=Status.FAILED))
        db.session.commit()
        result = purge(queued_at + days_later * DAY)
        left = set(db.session.scalars(select(OutboxMail.id)))
        attempts = set(db.session.scalars(select(DeliveryAttempt.mail_id)))
    assert result.digests == (0 if kept else 2)
    assert left == attempts == ({sent.id, failed.id} if kept else set())


@pytest.mark.parametrize("name, value, words", [
    ("CONTACT_DIGEST", "weekly", "CONTACT_DIGEST must be 'off' or 'daily', got 'weekly'"),
    ("CONTACT_DIGEST_HOUR", "24", "CONTACT_DIGEST_HOUR must be between 0 and 23, got 24"),
    ("CONTACT_DIGEST_HOUR", "eight", "CONTACT_DIGEST_HOUR must be a whole number"),
])
def test_a_malformed_digest_setting_stops_start_up_naming_it(
        tmp_path: Any, smtp_server: SMTPTestServer, name: str, value: str, words: str) -> None:
    """A digest setting the site cannot follow stops start-up with one line naming it."""
    with pytest.raises(ConfigError) as raised:
        create_app({**base_config(tmp_path, smtp_server), name: value})
    assert words in str(raised.value.code)
    assert "\n" not in str(raised.value.code)
