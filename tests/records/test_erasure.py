"""Erasure and access (docs/privacy.md): one address's every trace removed, or disclosed, and
no other."""

from __future__ import annotations

import json
import logging
import random
import re
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from contact_site.delivery import outbox, worker
from contact_site.delivery.models import Status
from contact_site.extensions import db
from contact_site.ratelimit import RateLimitCounter
from contact_site.records import export, privacy
from contact_site.records.archive import filtered, from_address
from contact_site.submissions.models import Submission
from support.factories import create_submission
from support.files import PDF
from support.forms import post_form
from support.outbox import deliver_now, rows
from support.records import counts, submission, upload_folder
from support.settings import skip_or_fail
from support.smtp_server import SMTPTestServer
from support.waiting import wait_until

ADA = "ada@example.com"
GRACE = "grace@example.com"
ADA_IP, GRACE_IP = "203.0.113.7", "198.51.100.9"
ADA_MARK = "zebra-quartz-7731"  # in Ada's message only


def rate_limit_keys(app: Flask) -> list[str]:
    """Every rate-limit counter key."""
    with app.app_context():
        return list(db.session.scalars(select(RateLimitCounter.key)))


def post_from(app: Flask, ip: str, email: str) -> None:
    """One real POST of the form from `ip`, so the limiter counts that address."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = ip
    page = client.get("/").get_data(as_text=True)
    tokens = dict(re.findall(r'name="(csrf_token|submission_key)" type="hidden" value="([^"]+)"',
                             page))
    client.post("/", data={**tokens, "recipient": "sales", "name": "x", "email": email,
                           "subject": "Hello", "message": "Hello there."})


@pytest.fixture
def two_visitors(make_app: Callable[..., Flask], smtp_server: SMTPTestServer) -> Flask:
    """Ada (twice, differently dressed, a file, delivered and thanked) and Grace, counted."""
    app = make_app(deliver=False, CONTACT_RATE_LIMIT="100 per minute",
                   CONTACT_MIN_FILL_SECONDS=0)
    create_submission(app, thank_you=True, email=ADA, message=f"First: {ADA_MARK}",
                      remote_addr=ADA_IP, attachment=PDF)
    create_submission(app, thank_you=True, email="Ada@Example.COM",
                      message=f"Second: {ADA_MARK}", remote_addr=ADA_IP)
    create_submission(app, thank_you=True, email=GRACE, name="Grace Hopper",
                      message="About compilers.", remote_addr=GRACE_IP, attachment=PDF)
    while deliver_now(app):  # every mail sent: status updates and attempts rows exist
        pass
    post_from(app, ADA_IP, ADA)
    post_from(app, GRACE_IP, GRACE)
    return app


def ada_ids(app: Flask) -> list[str]:
    """The ids of Ada's submissions."""
    with app.app_context():
        return list(db.session.scalars(select(Submission.id).where(from_address(ADA))))


def erase(app: Flask, address: str = ADA) -> privacy.Erasure:
    with app.app_context():
        return privacy.erase_address(address)


def test_erasure_counts_every_submission_mail_attempt_file_and_counter(two_visitors: Flask) -> None:
    """Erasing Ada removes her submissions (any case), their mails, attempts, file, counters."""
    app = two_visitors
    ids = ada_ids(app)
    assert len(ids) == 3  # two stored, one posted through the form
    erasure = erase(app)
    assert (erasure.submissions, erasure.files) == (3, 1)
    assert erasure.mails >= 4 and erasure.attempts >= 4  # owner and thank-you mails, sent
    assert erasure.rate_limit_counters >= 1
    assert all(submission(app, i) is None for i in ids)
    assert all(not upload_folder(app, i).exists() for i in ids)
    assert not any(ADA_IP in key for key in rate_limit_keys(app))


def test_other_visitors_are_untouched(two_visitors: Flask) -> None:
    """Grace's submissions, mails, attempts, file and counters are all still there."""
    app = two_visitors
    with app.app_context():
        grace = list(db.session.scalars(filtered(q=GRACE)))
        grace_ids = [s.id for s in grace]
    before = {r.id: (r.status, r.attempts) for r in rows(app) if r.submission_id in grace_ids}
    erase(app)
    after = {r.id: (r.status, r.attempts) for r in rows(app) if r.submission_id in grace_ids}
    assert after == before and len(after) >= 2
    assert all(submission(app, i) is not None for i in grace_ids)
    assert any(upload_folder(app, i).is_dir() for i in grace_ids)
    assert any(GRACE_IP in key for key in rate_limit_keys(app))


def test_nothing_of_the_address_is_left_in_the_export(two_visitors: Flask) -> None:
    """After erasure the CSV and JSON exports of everything hold no trace of Ada."""
    app = two_visitors
    erase(app)
    with app.app_context():
        text = "".join(export.csv_chunks(filtered(status="all")))
        text += "".join(export.json_chunks(filtered(status="spam")))
        text += "".join(export.csv_chunks(filtered(q="ada")))
    assert GRACE in text
    assert ADA not in text.lower() and ADA_MARK not in text


@pytest.fixture
def secure_delete_off() -> Iterator[None]:
    """Every connection starts with secure_delete OFF, as most SQLite builds (not Debian's) do."""

    def off(dbapi_connection: object, _record: object) -> None:
        if isinstance(dbapi_connection, sqlite3.Connection):
            dbapi_connection.execute("PRAGMA secure_delete=OFF")

    event.listen(Engine, "connect", off)
    try:
        yield
    finally:
        event.remove(Engine, "connect", off)


def database_bytes(app: Flask) -> bytes:
    """The raw bytes of the SQLite database file and its -wal and -shm files, lower-cased."""
    path = Path(app.config["SQLALCHEMY_DATABASE_URI"].removeprefix("sqlite:///"))
    return b"".join(p.read_bytes() for p in (path, Path(f"{path}-wal"), Path(f"{path}-shm"))
                    if p.exists()).lower()


def test_nothing_of_the_address_is_left_in_the_sqlite_files(secure_delete_off: None,
                                                            two_visitors: Flask) -> None:
    """Not in free pages, not in the WAL: the address and the message are gone from the bytes."""
    app = two_visitors
    assert ADA.encode() in database_bytes(app)  # the test would prove nothing otherwise
    erasure = erase(app)
    raw = database_bytes(app)
    assert erasure.database_scrubbed
    assert ADA.encode() not in raw and ADA_MARK.encode() not in raw
    assert ADA_IP.encode() not in raw
    assert GRACE.encode() in raw


def test_erasure_with_the_delivery_thread_running(secure_delete_off: None,
                                                  app: Callable[..., Flask],
                                                  smtp_server: SMTPTestServer) -> None:
    """A running worker's connections do not keep the address in the WAL."""
    create_submission(app, thank_you=True, email=ADA, message=ADA_MARK, remote_addr=ADA_IP)
    create_submission(app, thank_you=True, email=GRACE, remote_addr=GRACE_IP)
    wait_until(lambda: len(smtp_server.messages) >= 4, 15, "four mails delivered")
    erasure = erase(app)
    raw = database_bytes(app)
    assert erasure.database_scrubbed
    assert ADA.encode() not in raw and ADA_MARK.encode() not in raw


@pytest.mark.manual_delivery
@pytest.mark.each_database
def test_queued_mails_are_cancelled(app: Flask, smtp_server: SMTPTestServer) -> None:
    """Mails not yet sent are gone with the erasure: the worker finds nothing to send."""
    create_submission(app, thank_you=True, email=ADA)
    erasure = erase(app)
    assert erasure.cancelled == erasure.mails == 2
    assert deliver_now(app) == 0
    assert smtp_server.messages == []


@pytest.mark.manual_delivery
@pytest.mark.each_database
def test_a_mail_claimed_before_erasure_is_not_sent_or_recorded(
        app: Flask, smtp_server: SMTPTestServer) -> None:
    """A worker holding claims on erased mails sends none of them and writes no attempt."""
    create_submission(app, thank_you=True, email=ADA)
    with app.app_context():
        claimed = outbox.claim_due_mails()
    assert len(claimed) == 2
    erase(app)
    with app.app_context():
        worker.deliver_batch(claimed)
        # a late outcome matches no row
        outbox.settle([outbox.Attempt(claimed[0], Status.SENT, "250", 0.0)])
    assert smtp_server.messages == []
    assert counts(app) == {"submission": 0, "outbox": 0, "delivery_attempt": 0}


def test_erasure_on_postgresql_leaves_no_rows(make_app: Callable[..., Flask], postgres_url: str,
                                              smtp_server: SMTPTestServer) -> None:
    """On PostgreSQL every row of the address goes; the file is not rewritten (VACUUM's job)."""
    app = make_app(deliver=False, DATABASE_URL=postgres_url)
    create_submission(app, thank_you=True, email=ADA, remote_addr=ADA_IP, attachment=PDF)
    grace = create_submission(app, thank_you=True, email=GRACE, remote_addr=GRACE_IP)
    while deliver_now(app):
        pass
    erasure = erase(app)
    assert (erasure.submissions, erasure.files, erasure.database_scrubbed) == (1, 1, False)
    assert [r.submission_id for r in rows(app)] == [grace, grace]
    with app.app_context():
        assert privacy.visitor_export(ADA)["submissions"] == []


def test_erasure_logs_and_summary_name_no_address(two_visitors: Flask,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """What erasure writes down is counts, never the address or the client IP."""
    caplog.set_level(logging.DEBUG)
    erasure = erase(two_visitors)
    said = caplog.text + erasure.summary()
    assert "3 submission(s)" in erasure.summary()
    assert "ada" not in said.lower() and ADA_IP not in said


def test_erase_command_prints_counts(two_visitors: Flask) -> None:
    """`flask submissions erase ADDRESS` erases and prints the counts, not the address."""
    result = two_visitors.test_cli_runner().invoke(args=["submissions", "erase", ADA.upper()])
    assert result.exit_code == 0, result.output
    assert "erased 3 submission(s)" in result.output
    assert "ada" not in result.output.lower()
    assert ada_ids(two_visitors) == []


def test_visitor_export_holds_everything_about_the_visitor(two_visitors: Flask) -> None:
    """The access export has each submission with its mails and attempts, and no one else's."""
    with two_visitors.app_context():
        document = privacy.visitor_export(ADA)
    emails = {s["email"] for s in document["submissions"]}
    assert emails == {ADA, "Ada@Example.COM"}
    first = next(s for s in document["submissions"] if ADA_MARK in s["message"]
                 and s["files"])
    assert [(f["name"], f["stored"]) for f in first["files"]] == [("report.pdf", True)]
    assert first["remote_addr"] == ADA_IP
    assert {m["kind"] for m in first["mails"]} == {"recipient", "thank_you"}
    assert all(m["delivery_attempts"] for m in first["mails"])
    assert "submission_key" not in first and "claim_token" not in first["mails"][0]
    assert document["rate_limit_counters"] and GRACE not in json.dumps(document)


def test_export_command_with_email_gives_the_access_document(two_visitors: Flask) -> None:
    """`submissions export --email ADDRESS --format json` prints the visitor's document."""
    result = two_visitors.test_cli_runner().invoke(
        args=["submissions", "export", "--email", ADA, "--format", "json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert len(document["submissions"]) == 3
    assert document["retention_days"]["submissions"] == 180


@pytest.mark.manual_delivery
@pytest.mark.each_database
def test_delete_submission_removes_rows_history_and_file(app: Flask) -> None:
    """Deleting one submission takes its mails, attempts and upload folder; others stay."""
    doomed = create_submission(app, thank_you=True, email=ADA, attachment=PDF)
    kept = create_submission(app, thank_you=True, email=GRACE, attachment=PDF)
    while deliver_now(app):
        pass
    with app.app_context():
        removed = privacy.delete_submission(doomed)
        assert removed is not None
        assert (removed.submissions, removed.mails, removed.files) == (1, 2, 1)
        assert (removed.cancelled, removed.in_flight) == (0, 0)  # both were sent
        assert privacy.delete_submission(doomed) is None
    assert submission(app, doomed) is None
    assert not upload_folder(app, doomed).exists()
    assert {r.submission_id for r in rows(app)} == {kept}
    assert upload_folder(app, kept).is_dir()
    assert counts(app)["delivery_attempt"] == 2


def test_rate_limit_counters_kept_in_redis_are_erased(make_app: Callable[..., Flask]) -> None:
    """With RATELIMIT_STORAGE_URI on Redis, the counters of the visitor's IP go from there."""
    import redis

    url = "redis://127.0.0.1:6379/12"  # a database of its own on the shared Redis
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as error:
        skip_or_fail(f"Redis unreachable at {url}: {error}")
    # Addresses of this run only: other runs may share the Redis database.
    ada_ip, grace_ip = (f"198.18.{random.randrange(256)}.{n}" for n in (1, 2))
    app = make_app(deliver=False, CONTACT_RATE_LIMIT="100 per minute",
                   RATELIMIT_STORAGE_URI=url, CONTACT_MIN_FILL_SECONDS=0)
    post_from(app, ada_ip, ADA)
    post_from(app, grace_ip, GRACE)
    assert client.keys(f"*/{ada_ip}/*") and client.keys(f"*/{grace_ip}/*")
    erasure = erase(app)
    assert erasure.rate_limit_counters >= 1
    assert client.keys(f"*/{ada_ip}/*") == []
    assert client.keys(f"*/{grace_ip}/*")
    client.delete(*client.keys(f"*/{grace_ip}/*"))
    client.close()


# One mailbox with an internationalised domain, written every way a visitor or an owner may.
IDN_TYPED = "User@Bücher.example"  # what the visitor typed in the form
IDN_STORED = "User@xn--bcher-kva.example"  # what the form stores
IDN_FORMS = ["user@bücher.example", "user@xn--bcher-kva.example", "USER@BÜCHER.EXAMPLE",
             "USER@XN--BCHER-KVA.EXAMPLE", "user+news@bücher.example",
             "User+x@xn--bcher-kva.example", "  user@bu\u0308cher.example "]  # NFD ü, spaces
IDN_NEIGHBOURS = ["user@buecher.example", "other@bücher.example", "user@bucher.example"]


@pytest.fixture
def idn_visitor(make_app: Callable[..., Flask]) -> Flask:
    """The visitor three times (through the form, as a bot's spam kept as posted, and a row
    filed with a Unicode key before keys were written in ASCII), and neighbours."""

    app = make_app(deliver=False)
    client = app.test_client()
    assert post_form(client, email=IDN_TYPED).status_code == 303
    assert post_form(client, email="user+bot@BÜCHER.example", website="x").status_code == 303
    old = create_submission(app, thank_you=True, email="user@bücher.example")
    for neighbour in IDN_NEIGHBOURS:
        create_submission(app, thank_you=True, email=neighbour)
    with app.app_context():
        found = db.session.get(Submission, old)
        assert found is not None
        found.mailbox_key = "user@bücher.example"  # as the earlier rule wrote it
        db.session.commit()
        stored = set(db.session.scalars(select(Submission.email)))
    assert {IDN_STORED, "user+bot@BÜCHER.example", "user@bücher.example"} <= stored
    return app


def idn_emails(app: Flask) -> set[str]:
    """The addresses of every stored submission."""
    with app.app_context():
        return set(db.session.scalars(select(Submission.email)))


@pytest.mark.parametrize("written", IDN_FORMS)
def test_erasure_finds_an_internationalised_address_however_it_is_written(
        idn_visitor: Flask, written: str) -> None:
    """Unicode or punycode domain, any case, a +tag: the same three submissions, no other."""
    erasure = erase(idn_visitor, written)
    assert erasure.submissions == 3
    assert idn_emails(idn_visitor) == set(IDN_NEIGHBOURS)


@pytest.mark.parametrize("written", IDN_FORMS)
def test_access_export_finds_an_internationalised_address_however_it_is_written(
        idn_visitor: Flask, written: str) -> None:
    """The access document, and `export --email` as CSV, hold the three, and no neighbour."""
    with idn_visitor.app_context():
        document = privacy.visitor_export(written)
    assert {s["email"] for s in document["submissions"]} == {
        IDN_STORED, "user+bot@BÜCHER.example", "user@bücher.example"}
    result = idn_visitor.test_cli_runner().invoke(
        args=["submissions", "export", "--email", written, "--format", "csv"])
    assert result.exit_code == 0, result.output
    text = result.output.lower()
    assert text.count("@bücher") + text.count("@xn--bcher") == 3
    assert not any(neighbour in result.output for neighbour in IDN_NEIGHBOURS)


@pytest.mark.manual_delivery
@pytest.mark.each_database
@pytest.mark.parametrize(("written", "stored"), [
    ("Ada+news@Example.COM", "ada@example.com"),
    ("ADA@example.com", "ada+list@example.com"),
    ("ada@EXAMPLE.com", "Ada@Example.com"),
])
def test_erasure_and_export_join_case_and_tag(app: Flask, written: str,
                                              stored: str) -> None:
    """Letter case and a +tag do not hide a submission from erasure or the access export."""
    create_submission(app, thank_you=True, email=stored)
    create_submission(app, thank_you=True, email=GRACE)
    with app.app_context():
        assert len(privacy.visitor_export(written)["submissions"]) == 1
    assert erase(app, written).submissions == 1
    assert idn_emails(app) == {GRACE}
