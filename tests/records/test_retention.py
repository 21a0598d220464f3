"""Retention (docs/privacy.md): what goes when, once a day across processes, on a moved clock."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import select

from contact_site.daily_jobs import daily_jobs_of
from contact_site.database import utcnow
from contact_site.delivery import outbox
from contact_site.delivery.models import MailKind, Status
from contact_site.extensions import db
from contact_site.records.models import DAILY, MaintenanceRun
from contact_site.records.retention import Purge, purge, purge_if_due
from contact_site.runtime import start_process
from contact_site.submissions.models import Submission
from support.factories import create_submission
from support.files import PDF
from support.outbox import deliver_now, rows
from support.processes import FLASK, PROJECT_ROOT, worker_env
from support.records import age, counts, owner_sent_at, submission, upload_folder
from support.settings import skip_or_fail
from support.smtp_server import ReceivedMail, SMTPTestServer
from support.waiting import wait_until

DAY = timedelta(days=1)


def purge_at(app: Flask, now: datetime) -> Purge:
    """One retention pass as of `now`."""
    with app.app_context():
        return purge(now)


def delivered(app: Flask, **kwargs: object) -> str:
    """A submission whose mails were all sent; its id."""
    submission_id = create_submission(app, thank_you=True, **kwargs)
    while deliver_now(app):
        pass
    return submission_id


@pytest.mark.manual_delivery
@pytest.mark.each_database
@pytest.mark.parametrize("days_later, kept", [(179, True), (181, False)])
def test_submissions_are_deleted_after_the_retention_days(
        app: Flask, smtp_server: SMTPTestServer, days_later: int, kept: bool) -> None:
    """At 181 days a submission goes with its mails, attempts and file; at 179 it stays."""
    created = utcnow()
    submission_id = delivered(app, attachment=PDF)
    result = purge_at(app, created + days_later * DAY)
    assert (submission(app, submission_id) is not None) is kept
    assert result.submissions == (0 if kept else 1)
    if not kept:
        assert counts(app) == {"submission": 0, "outbox": 0, "delivery_attempt": 0}
        assert not upload_folder(app, submission_id).exists()
    else:
        assert counts(app)["delivery_attempt"] == 2


@pytest.mark.settings(CONTACT_RETENTION_DAYS=0)
@pytest.mark.manual_delivery
def test_retention_zero_keeps_submissions(app: Callable[..., Flask]) -> None:
    """CONTACT_RETENTION_DAYS=0 keeps submissions however old."""
    submission_id = create_submission(app, thank_you=True)
    assert purge_at(app, utcnow() + 3650 * DAY).submissions == 0
    assert submission(app, submission_id) is not None


@pytest.mark.manual_delivery
@pytest.mark.each_database
@pytest.mark.parametrize("days_after_sending, file_kept", [(29, True), (31, False)])
def test_an_upload_is_deleted_days_after_the_owner_mail_was_sent(
        app: Flask, smtp_server: SMTPTestServer, days_after_sending: int,
        file_kept: bool) -> None:
    """The file goes 30 days after its mail was sent; the record keeps its name, type, size."""
    submission_id = delivered(app, attachment=PDF)
    sent = owner_sent_at(app, submission_id)
    result = purge_at(app, sent + days_after_sending * DAY)
    assert upload_folder(app, submission_id).is_dir() is file_kept
    assert result.uploads == (0 if file_kept else 1) and result.submissions == 0
    kept = submission(app, submission_id)
    assert kept is not None
    [stored] = kept.files
    assert (stored.path is not None) is file_kept
    assert (stored.name, stored.content_type, stored.size) == (
        "report.pdf", "application/pdf", len(PDF))


@pytest.mark.manual_delivery
@pytest.mark.each_database
def test_an_upload_whose_mail_was_not_sent_is_kept(app: Flask) -> None:
    """While the owner's mail waits (or failed), the file stays with the submission."""
    submission_id = create_submission(app, thank_you=True, attachment=PDF)
    result = purge_at(app, utcnow() + 90 * DAY)
    assert result.uploads == 0
    assert upload_folder(app, submission_id).is_dir()


@pytest.mark.manual_delivery
@pytest.mark.each_database
def test_an_upload_is_kept_while_a_resend_is_queued(app: Flask,
                                                    smtp_server: SMTPTestServer) -> None:
    """A new copy of the owner's mail not yet sent keeps the file it must carry."""
    submission_id = delivered(app, attachment=PDF)
    with app.app_context():
        found = db.session.get(Submission, submission_id)
        assert found is not None
        outbox.enqueue_mail(found, MailKind.OWNER, found.recipient_address)
        db.session.commit()
    purge_at(app, owner_sent_at(app, submission_id) + 31 * DAY)
    assert upload_folder(app, submission_id).is_dir()


@pytest.mark.manual_delivery
@pytest.mark.each_database
def test_after_its_upload_expired_the_owner_mail_is_resent_without_it(
        app: Flask, smtp_server: SMTPTestServer) -> None:
    """A resend after the file's retention still goes out, without an attachment."""
    submission_id = delivered(app, attachment=PDF)
    purge_at(app, owner_sent_at(app, submission_id) + 31 * DAY)
    with app.app_context():
        found = db.session.get(Submission, submission_id)
        assert found is not None
        outbox.enqueue_mail(found, MailKind.OWNER, found.recipient_address)
        db.session.commit()
    before = len(smtp_server.messages)
    deliver_now(app)
    assert [r.status for r in rows(app)].count(Status.SENT) == 3
    assert len(smtp_server.messages) == before + 1
    def files(mail: ReceivedMail) -> list[str | None]:
        return [part.get_filename() for part in mail.message.iter_attachments()]

    first = next(m for m in smtp_server.messages if m.rcpt_tos == ["sales@example.com"])
    assert "report.pdf" in files(first)
    assert "report.pdf" not in files(smtp_server.messages[-1])


@pytest.mark.manual_delivery
@pytest.mark.each_database
@pytest.mark.parametrize("days_later, spam_kept", [(13, True), (15, False)])
def test_spam_is_deleted_after_the_spam_retention_days(
        app: Flask, days_later: int, spam_kept: bool) -> None:
    """Spam goes after 14 days; a message that is not spam, stored with it, stays."""
    spam = create_submission(app, email="bot@example.com", verdict="spam")
    ham = create_submission(app, thank_you=True, email="ada@example.com")
    result = purge_at(app, utcnow() + days_later * DAY)
    assert (submission(app, spam) is not None) is spam_kept
    assert submission(app, ham) is not None
    assert result.spam == (0 if spam_kept else 1)


@pytest.mark.manual_delivery
@pytest.mark.each_database
def test_one_pass_removes_only_what_is_due(app: Flask,
                                           smtp_server: SMTPTestServer) -> None:
    """Old, spam and sent-file cases side by side: each goes on its day, nothing else."""
    old = delivered(app, email="old@example.com", attachment=PDF)
    age(app, old, 200)
    file_done = delivered(app, email="file@example.com", attachment=PDF)
    age(app, file_done, 40)
    fresh = delivered(app, email="fresh@example.com", attachment=PDF)
    spam = create_submission(app, email="bot@example.com", verdict="spam")
    age(app, spam, 20)
    young_spam = create_submission(app, email="bot2@example.com", verdict="spam")
    result = purge_at(app, utcnow())
    assert (result.submissions, result.spam, result.uploads) == (1, 1, 1)
    assert submission(app, old) is None and submission(app, spam) is None
    assert not upload_folder(app, file_done).exists()
    assert submission(app, file_done) is not None
    assert upload_folder(app, fresh).is_dir()
    assert submission(app, young_spam) is not None


@pytest.mark.manual_delivery
@pytest.mark.each_database
def test_an_orphaned_upload_folder_is_swept(app: Flask) -> None:
    """A folder left by a crash (no submission holds it) goes once a day old."""
    orphan = Path(app.config["UPLOAD_FOLDER"]) / ("ab" * 16)
    orphan.mkdir(parents=True)
    (orphan / "attachment.pdf").write_bytes(PDF)
    assert purge_at(app, utcnow()).orphans == 0  # it may be a request in progress
    assert purge_at(app, utcnow() + 2 * DAY).orphans == 1
    assert not orphan.exists()


def last_run(app: Flask) -> datetime:
    """When the daily purge last ran, from the maintenance row."""
    with app.app_context():
        value = db.session.scalar(select(MaintenanceRun.last_run).where(
            MaintenanceRun.name == DAILY))
        assert value is not None
        return value


@pytest.mark.each_database
def test_the_daily_purge_runs_once_a_day_across_apps(database_url: str,
                                                     make_app: Callable[..., Flask]) -> None:
    """Two processes' apps on one database: one takes each day's turn, the other skips."""
    first = make_app(deliver=False, DATABASE_URL=database_url)
    second = make_app(deliver=False, DATABASE_URL=database_url)
    now = utcnow()
    turns = []
    for app, when in ((first, now), (second, now), (second, now + timedelta(hours=23)),
                      (second, now + DAY), (first, now + DAY)):
        with app.app_context():
            turns.append(purge_if_due(when) is not None)
    assert turns == [True, False, False, True, False]
    assert last_run(first) == now + DAY


@pytest.mark.each_database
def test_concurrent_daily_turns_run_once(database_url: str,
                                         make_app: Callable[..., Flask]) -> None:
    """Eight threads of two apps asking at the same moment: exactly one purges."""
    apps = [make_app(deliver=False, DATABASE_URL=database_url) for _ in range(2)]
    now, barrier, results = utcnow(), threading.Barrier(8), []
    lock = threading.Lock()

    def ask(app: Flask) -> None:
        with app.app_context():
            barrier.wait(10)
            outcome = purge_if_due(now)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=ask, args=(apps[n % 2],)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(results) == 8
    assert sum(result is not None for result in results) == 1


@pytest.mark.manual_delivery
def test_the_delivery_thread_applies_retention(app: Callable[..., Flask]) -> None:
    """A running delivery backend purges by itself: an old submission goes without a command."""
    old = create_submission(app, thank_you=True)
    age(app, old, 200)
    start_process(app)
    wait_until(lambda: submission(app, old) is None, 20, "the daily purge by the thread")
    assert last_run(app) > utcnow() - DAY


@pytest.mark.manual_delivery
def test_a_failing_daily_job_does_not_stop_delivery(app: Callable[..., Flask],
                                                    smtp_server: SMTPTestServer) -> None:
    """A retention error is logged; the loop keeps delivering."""

    def broken(_app: Flask, _now: datetime) -> None:
        raise RuntimeError("job failed")

    daily_jobs_of(app).insert(0, broken)
    create_submission(app, thank_you=True)
    start_process(app)
    wait_until(lambda: len(smtp_server.messages) >= 2, 20, "mails delivered")


@pytest.mark.manual_delivery
@pytest.mark.each_database
def test_purge_command_prints_counts(app: Flask) -> None:
    """`flask submissions purge` applies retention now and prints what it removed."""
    spam = create_submission(app, email="bot@example.com", verdict="spam")
    age(app, spam, 15)
    result = app.test_cli_runner().invoke(args=["submissions", "purge"])
    assert result.exit_code == 0, result.output
    assert "0 old submission(s), 1 spam" in result.output
    assert submission(app, spam) is None


def test_purge_command_under_faketime(make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """End to end with the process clock moved 20 days on: spam goes, the rest stays."""
    if shutil.which("faketime") is None:
        skip_or_fail("faketime is not installed (apt-get install faketime)")
    app = make_app(deliver=False)
    spam = create_submission(app, email="bot@example.com", verdict="spam")
    ham = create_submission(app, thank_you=True, email="ada@example.com", attachment=PDF)
    # libfaketime: a faked monotonic clock hangs Python's timed waits (docs/stack-pitfalls.md),
    # so it stays real; time.sleep then fails, which the code under test does not rely on.
    env = worker_env(app, FAKETIME_DONT_FAKE_MONOTONIC="1")
    done = subprocess.run(["faketime", "-f", "+20d", FLASK, "--app", "contact_site",
                           "submissions", "purge"], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "0 old submission(s), 1 spam" in done.stdout
    assert submission(app, spam) is None
    assert submission(app, ham) is not None and upload_folder(app, ham).is_dir()


@pytest.mark.parametrize("settings, sentence", [
    ({}, "We keep your message, name and address for 180 days to answer you, then delete "
         "them; an attachment is deleted 30 days after it has reached us."),
    ({"CONTACT_RETENTION_DAYS": 90, "CONTACT_UPLOAD_RETENTION_DAYS": 0},
     "We keep your message, name and address for 90 days to answer you, then delete them."),
    ({"CONTACT_RETENTION_DAYS": 0, "CONTACT_UPLOAD_RETENTION_DAYS": 7},
     "We keep your message, name and address until we delete them; an attachment is "
     "deleted 7 days after it has reached us."),
])
def test_the_contact_page_says_what_is_kept_and_for_how_long(
        make_app: Callable[..., Flask], settings: dict[str, int], sentence: str) -> None:
    """One sentence near the submit button, from the retention settings."""
    page = make_app(deliver=False, **settings).test_client().get("/").get_data(as_text=True)
    match = re.search(r'<p class="hint privacy-note" id="privacy-note">(.*?)</p>', page, re.S)
    assert match is not None
    assert " ".join(match.group(1).split()) == sentence
    assert page.index('id="privacy-note"') < page.index('id="submit-button"')


def test_audit_lines_are_kept_as_long_as_submissions(make_app):
    """The console's audit log is purged with the submissions' retention, nothing newer."""
    from contact_site.admin import audit
    from contact_site.database import utcnow

    app = make_app(deliver=False, CONTACT_RETENTION_DAYS=30)
    now = utcnow()
    with app.app_context():
        for age_days, action in ((31, "old"), (29, "recent")):
            db.session.add(audit.AuditEntry(created_at=now - timedelta(days=age_days),
                                            actor="owner", action=action, detail=""))
        db.session.commit()
    audit.purge_with_submissions(app, now)
    with app.app_context():
        assert [entry.action for entry in db.session.scalars(audit.newest_first())] == ["recent"]
