"""`flask --app contact_site outbox status|retry|work` and `init-db`, run from the command line."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
import sqlalchemy as sa
from conftest import database_params
from delivery_helpers import (
    FLASK,
    PROJECT_ROOT,
    deliver_now,
    queue_submissions,
    row,
    statuses,
    worker_env,
)
from sqlalchemy import update

from contact_site.database import utcnow
from contact_site.delivery.models import OutboxMail
from contact_site.extensions import db


@pytest.fixture
def app(manual_app):
    """An app without a delivery thread: the commands under test do the work."""
    return manual_app


def flask(app, *args: str, **settings: object) -> subprocess.CompletedProcess[str]:
    """Run one `flask --app contact_site ...` command against the test's database."""
    return subprocess.run([FLASK, "--app", "contact_site", *args], cwd=PROJECT_ROOT,
                          env=worker_env(app, **settings), capture_output=True, text=True,
                          timeout=60)


def test_status_prints_counts_oldest_age_and_failures_with_their_reply(app, smtp_server):
    smtp_server.mode, smtp_server.fail_times = "550", 1
    refused, accepted = queue_submissions(app, count=2)
    deliver_now(app)
    queue_submissions(app)
    result = flask(app, "outbox", "status")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:4] == ["queued   1", "sending  0", "sent     1", "failed   1"]
    assert lines[4].startswith("oldest queued: ")
    assert lines[5] == (f"failed {refused} recipient to sales@example.com after 1 attempt(s): "
                        "550 5.7.1 Rejected by policy")


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
