"""With scanning on, the operator and the owner see the virus scanner's state and the files
waiting for it: /healthz, `outbox status`, the daily digest and the webhook payload, with a
real clamd taken away and brought back."""

from __future__ import annotations

import base64
import io
import json
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update
from standardwebhooks.webhooks import Webhook as Verifier

from contact_site.database import utcnow
from contact_site.delivery.models import MailKind, OutboxMail
from contact_site.extensions import db
from contact_site.records import digest
from contact_site.submissions.models import SubmissionFile
from support.forms import post_form
from support.forms_files import post_declared, write_forms
from support.outbox import deliver_now, make_due, rows
from support.processes import FLASK, PROJECT_ROOT, worker_env
from support.smtp_server import SMTPTestServer
from support.webhook_receiver import ReceivedRequest, WebhookReceiver

pytestmark = pytest.mark.timeout(120)

CLEAN = b"Notes on the analytical engine.\n"
SECRET_ENV = "TEST_SCAN_WEBHOOK_SECRET"
SECRET = "whsec_" + base64.b64encode(b"another secret of 32 bytes......").decode()
# A far morning: send_if_due is given its `now`, and the first digest covers the day before.
MORNING = datetime(2026, 5, 17, 9, 0)
# One form with a file field and a standard webhook; no thank-you, so the outbox holds the
# owner's mail and the webhook delivery alone.
FORM = """
[[forms]]
slug = "contact"
title = "Contact"
recipients = ["Owner <owner@example.com>"]
thank_you = false

  [[forms.fields]]
  name = "email"
  type = "email"
  label = "Email"
  required = true

  [[forms.fields]]
  name = "message"
  type = "textarea"
  label = "Message"
  required = true

  [[forms.fields]]
  name = "cv"
  type = "file"
  label = "CV"
  extensions = ["txt"]

  [[forms.webhooks]]
  url = "{url}"
  secret_env = "{secret_env}"
"""


def scanning_app(make_app: Callable[..., Flask], clamd: Any, **settings: Any) -> Flask:
    """An app delivering by hand whose files are scanned by the test's clamd."""
    return make_app(deliver=False, CONTACT_CLAMD=clamd.tcp_address, CONTACT_SCAN_TIMEOUT=2,
                    **settings)


def post_with_file(app: Flask, data: bytes = CLEAN) -> None:
    """The visitor sends the built-in form to Sales with one file."""
    response = post_form(app.test_client(), attachment=(io.BytesIO(data), "notes.txt"))
    assert response.status_code == 303, response.get_data(as_text=True)


def healthz(app: Flask) -> tuple[int, dict[str, Any]]:
    """GET /healthz as the operator on loopback: its status code and JSON."""
    response = app.test_client().get("/healthz")
    return response.status_code, response.get_json()


def outbox_status(app: Flask, clamd: Any) -> list[str]:
    """The lines `flask --app contact_site outbox status` prints, scanning with clamd."""
    result = subprocess.run([FLASK, "--app", "contact_site", "outbox", "status"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                            env=worker_env(app, CONTACT_CLAMD=clamd.tcp_address,
                                           CONTACT_SCAN_TIMEOUT=2))
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def scan_states(app: Flask) -> list[tuple[str | None, str | None]]:
    """Every stored file's scan state and detail."""
    with app.app_context():
        return [(stored.scan_state, stored.scan_detail)
                for stored in db.session.scalars(db.select(SubmissionFile))]


def test_healthz_and_outbox_status_follow_the_scanner_down_and_back(make_app, clamd,
                                                                    smtp_server) -> None:
    """The details and `outbox status` say up, then down while clamd is stopped (still 200
    and "ok": the site keeps taking messages), then up again, with the files waiting."""
    app = scanning_app(make_app, clamd)
    post_with_file(app)
    status, body = healthz(app)
    assert (status, body["status"], body["scanner"], body["scan_pending"]) == (
        200, "ok", "up", 1)
    assert "scanner: up (1 file(s) waiting for a scan)" in outbox_status(app, clamd)

    clamd.stop()
    deliver_now(app)  # hold: the owner's mail waits, its file still pending
    status, body = healthz(app)
    assert (status, body["status"], body["scanner"], body["scan_pending"]) == (
        200, "ok", "down", 1)
    assert "scanner: down (1 file(s) waiting for a scan)" in outbox_status(app, clamd)
    public = app.test_client()
    public.environ_base["REMOTE_ADDR"] = "192.0.2.1"
    assert public.get("/healthz").get_json() == {"status": "ok"}  # it hears nothing of it

    clamd.start()
    make_due(app)
    deliver_now(app)
    assert scan_states(app) == [("clean", None)]
    status, body = healthz(app)
    assert (status, body["status"], body["scanner"], body["scan_pending"]) == (
        200, "ok", "up", 0)
    assert "scanner: up (0 file(s) waiting for a scan)" in outbox_status(app, clamd)


def test_without_a_scanner_neither_healthz_nor_outbox_status_names_one(make_app,
                                                                       smtp_server) -> None:
    """CONTACT_CLAMD unset: no `scanner` or `scan_pending` in the details, no scanner line."""
    app = make_app(deliver=False)
    post_with_file(app)
    status, body = healthz(app)
    assert status == 200 and "scanner" not in body and "scan_pending" not in body
    result = subprocess.run([FLASK, "--app", "contact_site", "outbox", "status"],
                            cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60,
                            env=worker_env(app))
    assert result.returncode == 0, result.stderr
    assert not any(line.startswith("scanner:") for line in result.stdout.splitlines())


def digest_text(app: Flask, smtp_server: SMTPTestServer, address: str) -> str:
    """The plain text of the digest the server received for `address`."""
    ids = {row.message_id for row in rows(app) if row.kind == MailKind.DIGEST}
    [mail] = [mail for mail in smtp_server.messages
              if mail.message["Message-ID"] in ids and mail.rcpt_tos == [address]]
    return str(mail.message.get_body(("plain",)).get_content())


def test_the_digest_counts_the_recipients_files_held_for_their_scan(make_app, clamd,
                                                                    smtp_server) -> None:
    """clamd down under hold: the morning digest to Sales says its file waits for the scan,
    and so does its owner's mail; Support's digest, with nothing held, does not mention it."""
    app = scanning_app(make_app, clamd, CONTACT_DIGEST="daily", CONTACT_DIGEST_HOUR=0)
    post_with_file(app)
    clamd.stop()
    deliver_now(app)
    assert scan_states(app) == [("pending", None)]
    with app.app_context():
        assert digest.send_if_due(MORNING) == 2
    deliver_now(app)
    held = " ".join(digest_text(app, smtp_server, "sales@example.com").split())
    assert ("1 file waits for its virus scan, and your copy of its message waits with it."
            in held)
    assert "virus scan" not in digest_text(app, smtp_server, "support@example.com")


def declared_site(make_app: Callable[..., Flask], clamd: Any, folder: Path, url: str,
                  monkeypatch: pytest.MonkeyPatch) -> Flask:
    """The app serving FORM, its webhook to `url`, files scanned by the test's clamd."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    path = write_forms(folder / "site", FORM.format(url=url, secret_env=SECRET_ENV))
    return scanning_app(make_app, clamd, CONTACT_FORMS_FILE=str(path),
                        WEBHOOK_ALLOW_PRIVATE=True)


def event_files(request: ReceivedRequest) -> list[dict[str, Any]]:
    """The `data.files` of a submission.created delivery, verified with the secret."""
    event = Verifier(SECRET).verify(request.body, request.headers)
    return list(event["data"]["files"])


def make_due_only(app: Flask, kind: str) -> None:
    """Bring the queued rows of one kind due now, and put the others an hour away."""
    with app.app_context():
        now = utcnow()
        db.session.execute(update(OutboxMail).where(OutboxMail.status == "queued").values(
            next_attempt_at=now + timedelta(hours=1)))
        db.session.execute(update(OutboxMail).where(
            OutboxMail.status == "queued", OutboxMail.kind == kind).values(
            next_attempt_at=now - timedelta(seconds=1)))
        db.session.commit()


def test_the_webhook_carries_each_files_scan_as_it_stands_never_its_contents(
        make_app, clamd, tmp_path, monkeypatch) -> None:
    """A delivery before the scan says pending; its retry after the owner's mail found the
    virus says infected with the signature; the file's bytes are in neither."""
    infected = b"hello " + clamd.marker + b" bye\n"
    with WebhookReceiver() as receiver:
        app = declared_site(make_app, clamd, tmp_path, receiver.url(), monkeypatch)
        clamd.stop()
        receiver.answer_next("500")  # the first attempt fails: a retry will follow
        answer = post_declared(app.test_client(), "/f/contact",
                               {"email": "ada@example.com", "message": "My CV."},
                               files=(("cv", infected, "cv.txt"),))
        assert answer.status_code == 202, answer.get_data(as_text=True)
        deliver_now(app)  # the owner's mail waits for the scanner; the webhook gets a 500
        clamd.start()
        make_due_only(app, MailKind.OWNER)
        deliver_now(app)  # the owner's mail: the file is scanned and found infected
        assert scan_states(app) == [("infected", clamd.signature)]
        make_due(app)
        deliver_now(app)  # the webhook's retry
        first, retry = receiver.requests
    entry = {"field": "cv", "name": "cv.txt", "content_type": "text/plain; charset=utf-8",
             "size": len(infected)}
    [before] = event_files(first)
    [after] = event_files(retry)
    assert before == {**entry, "sha256": before["sha256"],
                      "scan": {"state": "pending", "detail": None}}
    assert after == {**entry, "sha256": before["sha256"],
                     "scan": {"state": "infected", "detail": clamd.signature}}
    for request in (first, retry):
        assert clamd.marker not in request.body
        assert json.loads(request.body)["data"]["fields"]["cv"] == ["cv.txt"]
