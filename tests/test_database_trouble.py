"""The database cannot take a submission: 503 in time, the inputs kept, nothing stored or logged."""

from __future__ import annotations

import io
import logging
import re
import socket
import sqlite3
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import func, select

from contact_site import create_app
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.databases import sqlite_file, sqlite_locked
from support.forms import PDF_BYTES_FOR_TESTS, form_tokens, post_form
from support.settings import base_config
from support.waiting import wait_until

ANSWER_WITHIN_SECONDS = 10
NOT_SENT = "Nothing was sent. Please try again in a moment."
# Distinctive values: none of them may appear in any log line, at any level.
TYPED = {"name": "Zebediah Quux", "email": "zebediah.quux@example.com",
         "subject": "Subject-7f3a9c", "message": "Message-body-4e8d1b, second sentence."}
CLIENT_IP = "203.0.113.77"


def client_at(app, address: str = CLIENT_IP):
    """A test client whose requests come from `address`."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def timed_post(client, **kwargs):
    """POST the form; the answer and the seconds it took."""
    start = time.monotonic()
    response = post_form(client, **kwargs)
    return response, time.monotonic() - start


def assert_logs_hold_no_value(text: str) -> None:
    """No column value of the submission, nor the client's address, in the captured logs."""
    for value in (*TYPED.values(), CLIENT_IP):
        assert value not in text


def stored_submissions(path: Path) -> int:
    """Submissions in the SQLite file, read by a connection of the test's own."""
    with sqlite3.connect(path) as reader:
        return int(reader.execute("SELECT count(*) FROM submission").fetchone()[0])


@pytest.mark.parametrize("limit", ["5 per minute;50 per day", "off"],
                         ids=["rate limit counted in the database", "rate limit off"])
def test_locked_sqlite_answers_503_in_time_with_the_inputs_kept(make_app, caplog, limit):
    caplog.set_level(logging.DEBUG)  # every logger, SQLAlchemy's included
    app = make_app(CONTACT_RATE_LIMIT=limit)
    client = client_at(app)
    tokens = form_tokens(client)
    caplog.clear()
    with sqlite_locked(sqlite_file(app)):
        response, seconds = timed_post(client, tokens=tokens, **TYPED,
                                       attachment=(io.BytesIO(PDF_BYTES_FOR_TESTS), "plan.pdf"))
        logged = caplog.text
        assert stored_submissions(sqlite_file(app)) == 0
    assert response.status_code == 503
    assert seconds < ANSWER_WITHIN_SECONDS
    page = response.get_data(as_text=True)
    assert NOT_SENT in page
    for name in ("name", "email", "subject"):
        assert f'value="{TYPED[name]}"' in page
    assert TYPED["message"] in page
    assert "Choose your file again" in page
    assert list(Path(app.config["UPLOAD_FOLDER"]).glob("*/*")) == []  # no half-stored upload
    assert f"submission {tokens['submission_key']} not stored: OperationalError" in logged
    assert_logs_hold_no_value(logged)


@pytest.mark.manual_delivery
def test_locked_sqlite_answers_json_503(app):
    client = app.test_client()
    tokens = form_tokens(client)
    with sqlite_locked(sqlite_file(app)):
        response, seconds = timed_post(client, json=True, tokens=tokens)
    assert response.status_code == 503 and seconds < ANSWER_WITHIN_SECONDS
    assert response.get_json() == {"error": NOT_SENT}


def test_after_unlocking_the_same_form_sends_once(app, smtp_server):
    """The 503 page's form, sent again once the lock is gone: one submission, two mails."""
    client = app.test_client()
    tokens = form_tokens(client)
    with sqlite_locked(sqlite_file(app)):
        refused, _ = timed_post(client, tokens=tokens, **TYPED)
    assert refused.status_code == 503
    page = refused.get_data(as_text=True)
    again = form_tokens_in(page)
    assert again["submission_key"] == tokens["submission_key"]
    assert post_form(client, tokens=again, **TYPED).status_code == 303
    assert post_form(client, tokens=again, **TYPED).status_code == 303  # a double click
    smtp_server.wait_for(2)
    time.sleep(1.5)  # a duplicate would go out with the worker's next poll
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "sales@example.com", TYPED["email"]]
    assert stored_submissions(sqlite_file(app)) == 1


def form_tokens_in(page: str) -> dict[str, str]:
    """The hidden csrf_token and submission_key of a rendered form."""
    pattern = r'name="(csrf_token|submission_key)" type="hidden" value="([^"]+)"'
    return dict(re.findall(pattern, page))


def closed_port() -> int:
    """A loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def app_without_postgres(tmp_path, smtp_server):
    """The app configured for a PostgreSQL server that is not there (nothing started)."""
    url = f"postgresql+psycopg://postgres@127.0.0.1:{closed_port()}/test"
    app = create_app({**base_config(tmp_path, smtp_server), "DATABASE_URL": url})
    yield app
    with app.app_context():
        db.engine.dispose()


@pytest.mark.parametrize("json", [False, True], ids=["html", "json"])
def test_unreachable_postgresql_answers_503_quickly(app_without_postgres, caplog, json):
    caplog.set_level(logging.DEBUG)
    client = client_at(app_without_postgres)
    response, seconds = timed_post(client, json=json, **TYPED)
    assert response.status_code == 503
    assert seconds < ANSWER_WITHIN_SECONDS
    if json:
        assert response.get_json() == {"error": NOT_SENT}
    else:
        assert NOT_SENT in response.get_data(as_text=True)
        assert TYPED["message"] in response.get_data(as_text=True)
    assert "not stored: OperationalError" in caplog.text
    assert_logs_hold_no_value(caplog.text)


def test_healthz_answers_503_without_postgresql(app_without_postgres):
    assert app_without_postgres.test_client().get("/healthz").status_code == 503


@pytest.mark.postgres
def test_locked_postgresql_table_answers_503_in_time_and_logs_no_value(
        make_app, postgres_url, caplog):
    """A write lock held elsewhere: the INSERT gives up (lock_timeout); its values stay hidden."""
    app = make_app(DATABASE_URL=postgres_url, deliver=False)
    client = client_at(app)
    tokens = form_tokens(client)
    caplog.set_level(logging.DEBUG)
    holder = sa.create_engine(postgres_url)
    try:
        with holder.connect() as conn:
            conn.execute(sa.text("LOCK TABLE submission IN EXCLUSIVE MODE"))  # reads still pass
            response, seconds = timed_post(client, tokens=tokens, **TYPED)
            conn.rollback()
    finally:
        holder.dispose()
    assert response.status_code == 503 and seconds < ANSWER_WITHIN_SECONDS
    assert TYPED["subject"] in response.get_data(as_text=True)
    assert "not stored: OperationalError (psycopg.errors.LockNotAvailable)" in caplog.text
    assert_logs_hold_no_value(caplog.text)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Submission)) == 0
    wait_until(lambda: post_form(client, tokens=tokens, **TYPED).status_code == 303, 10,
               "the same form accepted once the lock is gone")
