"""`flask --app contact_site outbox status|retry|work`, `submissions`, `users` and `init-db`,
run from the command line."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
import tty
import unicodedata
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy import update

from contact_site.admin.auth import User
from contact_site.database import utcnow
from contact_site.delivery import outbox
from contact_site.delivery.models import OutboxMail
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.databases import database_params
from support.factories import create_submission, queue_submissions
from support.forms import post_form
from support.outbox import deliver_now, row, statuses
from support.processes import FLASK, PROJECT_ROOT, worker_env

# An app without a delivery thread: the commands under test do the work.
pytestmark = [pytest.mark.manual_delivery, pytest.mark.each_database]

# Clear the screen, retitle the window (OSC ... BEL), CSI as one C1 character, a
# right-to-left override and an isolate, a carriage return to overwrite the line, a tab.
HOSTILE = "Hi\x1b[2J\x1b]0;pwned\x07 \x9b31m \u202egnp.exe\u2066 \rfake\tx"
HOSTILE_SHOWN = "Hi\\x1b[2J\\x1b]0;pwned\\x07 \\x9b31m \\u202egnp.exe\\u2066 \\rfake\\tx"


def flask(app, *args: str, **settings: object) -> subprocess.CompletedProcess[str]:
    """Run one `flask --app contact_site ...` command against the test's database."""
    return subprocess.run([FLASK, "--app", "contact_site", *args], cwd=PROJECT_ROOT,
                          env=worker_env(app, **settings), capture_output=True, text=True,
                          timeout=60)


def on_terminal(app, *args: str, **settings: object) -> str:
    """What `flask --app contact_site ...` shows on a terminal (a pseudo-terminal in raw
    mode, so the bytes are the program's own, not the line discipline's)."""
    leader, follower = pty.openpty()
    tty.setraw(follower)
    try:
        process = subprocess.Popen([FLASK, "--app", "contact_site", *args], cwd=PROJECT_ROOT,
                                   env=worker_env(app, **settings), stdin=subprocess.DEVNULL,
                                   stdout=follower, stderr=follower)
    finally:
        os.close(follower)
    shown = bytearray()
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if select.select([leader], [], [], 1)[0]:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the program closed the terminal
                    break
                if not chunk:
                    break
                shown += chunk
    finally:
        os.close(leader)
        process.wait(10)
    assert process.returncode == 0, bytes(shown)
    return shown.decode()


def assert_no_controls(shown: str) -> None:
    """Nothing but line breaks and printable text reached the terminal."""
    raw = sorted({f"U+{ord(c):04X}" for c in shown
                  if c != "\n" and unicodedata.category(c) in {"Cc", "Cf", "Zl", "Zp"}})
    assert raw == [], shown


def caught_by_the_honeypot(app) -> None:
    """A bot's post, stored as spam without validation: name, address and subject hostile."""
    client = app.test_client()
    response = post_form(client, website="http://spam.example.com", name=HOSTILE,
                         email=f"bot{HOSTILE}@example.com", subject=HOSTILE)
    assert response.status_code == 303
    with app.app_context():
        stored = db.session.scalars(db.select(Submission)).one()
        assert (stored.verdict, stored.subject) == ("spam", HOSTILE), "stored as typed"


def test_submissions_list_shows_stored_control_characters_escaped(app):
    caught_by_the_honeypot(app)
    shown = on_terminal(app, "submissions", "list", "--status", "spam")
    assert_no_controls(shown)
    [line] = shown.splitlines()
    assert line.endswith(f"spam      bot{HOSTILE_SHOWN}@example.com  {HOSTILE_SHOWN}")


def test_submissions_export_escapes_on_a_terminal_and_writes_a_file_exactly(app, tmp_path):
    """On a terminal the export is shown like any output; into a file it is data, exact."""
    caught_by_the_honeypot(app)
    shown = on_terminal(app, "submissions", "export", "--status", "spam", "--format", "csv")
    assert_no_controls(shown)
    assert f'"{HOSTILE_SHOWN}"' in shown
    # JSON writes C0 controls as \u001b itself, but not C1 controls or bidi overrides.
    shown = on_terminal(app, "submissions", "export", "--status", "spam", "--format", "json")
    assert_no_controls(shown)
    assert '"Hi\\u001b[2J\\u001b]0;pwned\\u0007 \\x9b31m \\u202egnp.exe\\u2066 ' in shown
    visitor = on_terminal(app, "submissions", "export", "--format", "json",
                          "--email", f"bot{HOSTILE}@example.com")
    assert_no_controls(visitor)
    output = tmp_path / "spam.csv"
    result = flask(app, "submissions", "export", "--status", "spam", "--output", str(output))
    assert result.returncode == 0, result.stderr
    assert HOSTILE in output.read_bytes().decode()


def test_outbox_status_shows_a_hostile_address_and_reply_escaped(app):
    (mail_id,) = queue_submissions(app)
    with app.app_context():
        db.session.execute(update(OutboxMail).where(OutboxMail.id == mail_id).values(
            status="failed", to_address=f"x{HOSTILE}@example.com", last_error=f"550 {HOSTILE}"))
        db.session.commit()
    shown = on_terminal(app, "outbox", "status")
    assert_no_controls(shown)
    assert (f"failed {mail_id} recipient to x{HOSTILE_SHOWN}@example.com after 0 attempt(s): "
            f"550 {HOSTILE_SHOWN}") in shown.splitlines()


def test_users_list_and_errors_show_names_escaped(app):
    with app.app_context():
        db.session.add(User(username=f"ada{HOSTILE}", password_hash="x"))
        db.session.commit()
    shown = on_terminal(app, "users", "list")
    assert_no_controls(shown)
    assert any(line.startswith(f"ada{HOSTILE_SHOWN}  owner  2fa none  created ")
               for line in shown.splitlines())
    result = flask(app, "users", "delete", f"eve{HOSTILE}")
    assert result.returncode == 1
    assert_no_controls(result.stderr)
    assert f"There is no account named eve{HOSTILE_SHOWN.lower()}" in result.stderr


def test_status_prints_counts_oldest_age_and_failures_with_their_reply(app, smtp_server):
    smtp_server.mode, smtp_server.fail_times = "550", 1
    refused, accepted = queue_submissions(app, count=2)
    deliver_now(app)
    queue_submissions(app)
    result = flask(app, "outbox", "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:5] == ["         mails  webhooks", "queued   1      0", "sending  0      0",
                         "sent     1      0", "failed   1      0"]
    assert lines[5].startswith("oldest queued: ")
    assert lines[6] == (f"failed {refused} recipient to sales@example.com after 1 attempt(s): "
                        "550 5.7.1 Rejected by policy")


# A chat service's webhook URL: its token in the path, never printed.
HOOK_URL = "https://hooks.example.com/services/T0/B0/t0ken-in-path?key=t0ken-in-query"
HOOK_SHOWN = "https://hooks.example.com/…"


def queue_webhooks(app, submission_id: str, count: int, failed: int = 0) -> list[int]:
    """Queue `count` webhook deliveries of the submission, the first `failed` of them
    refused for good (410); their ids."""
    with app.app_context():
        rows = [outbox.enqueue_webhook(submission_id, HOOK_URL, "submission.created")
                for _ in range(count)]
        db.session.commit()
        ids = [row.id for row in rows]
        db.session.execute(update(OutboxMail).where(OutboxMail.id.in_(ids[:failed])).values(
            status="failed", attempts=1, last_error="410 gone"))
        db.session.commit()
    return ids


def test_status_counts_webhooks_beside_mails_and_lists_a_failed_one(app):
    """Each state's mails and webhook deliveries apart, the oldest queued webhook's age, and a
    failed delivery with its event, its target cut short and the receiver's answer."""
    submission_id = create_submission(app)
    failed, _queued = queue_webhooks(app, submission_id, 2, failed=1)
    result = flask(app, "outbox", "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:5] == ["         mails  webhooks", "queued   1      1", "sending  0      0",
                         "sent     0      0", "failed   0      1"]
    assert lines[5].startswith("oldest queued: ") and lines[6].startswith(
        "oldest queued webhook: ")
    assert (f"failed {failed} webhook submission.created to {HOOK_SHOWN} after 1 attempt(s): "
            "410 gone") in lines
    assert "t0ken" not in result.stdout


def test_an_access_export_names_a_webhook_by_its_host_never_its_token(app):
    """The visitor learns where their message was posted (a recipient of their data), not
    the secret URL itself."""
    submission_id = create_submission(app, email="grace@example.com")
    queue_webhooks(app, submission_id, 1)
    result = flask(app, "submissions", "export", "--format", "json",
                   "--email", "grace@example.com")
    assert result.returncode == 0, result.stderr
    [submission] = json.loads(result.stdout)["submissions"]
    [hook] = [mail for mail in submission["mails"] if mail["kind"] == "webhook"]
    assert (hook["target"], hook["event"]) == (HOOK_SHOWN, "submission.created")
    assert "t0ken" not in result.stdout


def test_purge_takes_the_webhook_deliveries_of_what_it_removes(app):
    """An old submission goes with its queued webhook deliveries; a recent one keeps its own."""
    days = app.config["CONTACT_RETENTION_DAYS"] + 1
    old = create_submission(app, created_at=utcnow() - timedelta(days=days))
    recent = create_submission(app)
    queue_webhooks(app, old, 2)
    kept = queue_webhooks(app, recent, 1)
    result = flask(app, "submissions", "purge")
    assert result.returncode == 0, result.stderr
    assert "purged 1 old submission(s)" in result.stdout
    assert "3 cancelled, 0 already being handed" in result.stdout  # its mail and 2 webhooks
    with app.app_context():
        left = db.session.scalars(sa.select(OutboxMail.id).where(
            OutboxMail.kind == "webhook")).all()
    assert left == kept


def test_retry_requeues_failed_webhooks_too(app, smtp_server):
    """By id, a failed webhook delivery alone; with --failed, the failed mail and the rest."""
    smtp_server.mode = "550"
    (mail_id,) = queue_submissions(app)
    deliver_now(app)
    first, second = queue_webhooks(app, row(app, mail_id).submission_id, 2, failed=2)
    result = flask(app, "outbox", "retry", str(first))
    assert (result.returncode, result.stdout.strip()) == (0, "requeued 0 mail(s) and 1 webhook(s)")
    assert [row(app, i).status for i in (mail_id, first, second)] == ["failed", "queued", "failed"]
    result = flask(app, "outbox", "retry", "--failed")
    assert result.stdout.strip() == "requeued 1 mail(s) and 1 webhook(s)"
    assert [row(app, i).status for i in (mail_id, first, second)] == ["queued"] * 3


def test_status_names_claims_left_by_a_stopped_worker(app):
    queue_submissions(app, count=2)
    with app.app_context():
        db.session.execute(update(OutboxMail).values(
            status="sending", claim_token="gone", claimed_until=utcnow() - timedelta(seconds=5)))
        db.session.commit()
    result = flask(app, "outbox", "status")
    assert "sending  2" in result.stdout
    assert "stale claims: 2 (their worker stopped; another will take them over)" in result.stdout


def test_retry_failed_requeues_and_work_once_delivers(app, smtp_server):
    smtp_server.mode, smtp_server.fail_times = "550", 1
    (mail_id,) = queue_submissions(app)
    deliver_now(app)
    result = flask(app, "outbox", "retry", "--failed")
    assert (result.returncode, result.stdout.strip()) == (0, "requeued 1 mail(s)")
    assert row(app, mail_id).status == "queued"
    result = flask(app, "outbox", "work", "--once")
    assert result.returncode == 0, result.stderr
    assert f"mail {mail_id} attempt 2 sent" in result.stderr
    assert (row(app, mail_id).status, len(smtp_server.messages)) == ("sent", 1)


def test_retry_by_id_requeues_only_that_failed_mail(app, smtp_server):
    smtp_server.mode = "550"
    first, second = queue_submissions(app, count=2)
    deliver_now(app)
    result = flask(app, "outbox", "retry", str(second))
    assert result.stdout.strip() == "requeued 1 mail(s)"
    assert (row(app, first).status, row(app, second).status) == ("failed", "queued")


def test_retry_without_ids_or_flag_is_a_usage_error(app):
    result = flask(app, "outbox", "retry")
    assert result.returncode == 2
    assert "name the mail ids to retry, or pass --failed" in result.stderr


def test_work_once_delivers_what_is_due_and_exits(app, smtp_server):
    queue_submissions(app, count=2, thank_you=True)
    result = flask(app, "outbox", "work", "--once")
    assert result.returncode == 0, result.stderr
    assert statuses(app)["sent"] == 4
    assert len(smtp_server.messages) == 4


@pytest.mark.parametrize("database", database_params())
def test_init_db_creates_the_schema(database, request, tmp_path, make_app):
    """On an empty database, `init-db` creates the tables (the app would at start, too)."""
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    probe = make_app(deliver=False)
    result = flask(probe, "init-db", DATABASE_URL=url)
    assert (result.returncode, result.stdout.strip()) == (0, "Database ready."), result.stderr
    engine = sa.create_engine(url)
    try:
        assert {"outbox", "submission"} <= set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
