"""Webhooks end to end: a declared form posted to the real app, each delivery taken through
the outbox to a real loopback receiver, and checked there as a receiver would check it.

Deliveries run as a worker runs them (support.outbox.deliver_now), by the app's delivery
thread where a test restarts the app, or by a real Celery worker on Redis.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import event
from standardwebhooks.webhooks import Webhook as Verifier
from werkzeug.test import TestResponse

from contact_site.delivery import outbox, webhook_delivery
from contact_site.delivery.backend import backend_of
from contact_site.delivery.models import OutboxMail
from contact_site.extensions import db
from contact_site.records.privacy import delete_submission
from contact_site.submissions.models import Submission
from support.forms_files import HONEYPOT, post_declared, write_forms
from support.outbox import deliver_now, make_due, rows
from support.processes import CELERY, PROJECT_ROOT, reserved_port, worker_env
from support.smtp_server import SMTPTestServer
from support.waiting import wait_until
from support.webhook_receiver import ReceivedRequest, WebhookReceiver

SECRET_ENV = "TEST_WEBHOOK_SECRET"
SECRET = "whsec_" + base64.b64encode(b"a secret of thirty-two bytes....").decode()
BASE_URL = "https://contact.example.com"
# One form, one recipient and no thank-you: each submission queues one mail.
FORM = """
[[forms]]
slug = "contact"
title = "Contact"
recipients = ["Owner <owner@example.com>"]
thank_you = false

  [[forms.fields]]
  name = "name"
  type = "text"
  label = "Name"

  [[forms.fields]]
  name = "email"
  type = "email"
  label = "Email"
  required = true

  [[forms.fields]]
  name = "subject"
  type = "text"
  label = "Subject"

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
"""
VISITOR = {"name": "Ada Lovelace", "email": "ada@example.com", "subject": "Engines",
           "message": "Hello,\nabout the analytical engine."}
MakeApp = Callable[..., Flask]


def hook(url: str, **options: Any) -> str:
    """One `[[forms.webhooks]]` of the form, signed with the test secret unless told."""
    options.setdefault("secret_env", SECRET_ENV)
    lines = [f"url = {json.dumps(url)}"]
    lines += [f"{name} = {json.dumps(value)}" for name, value in options.items()
              if value is not None]
    return "\n  [[forms.webhooks]]\n" + "".join(f"  {line}\n" for line in lines)


def site(make_app: MakeApp, folder: Path, monkeypatch: pytest.MonkeyPatch, *hooks: str,
         deliver: bool = False, **settings: Any) -> Flask:
    """The app serving FORM with these webhooks, their secret in the environment; private
    targets allowed unless the settings say otherwise."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    path = write_forms(folder / "site", FORM + "".join(hooks))
    config = {"CONTACT_FORMS_FILE": str(path), "WEBHOOK_ALLOW_PRIVATE": True,
              "CONTACT_BASE_URL": BASE_URL, **settings}
    return make_app(deliver=deliver, **config)


def post(app: Flask, changes: Mapping[str, str] | None = None,
         files: Sequence[tuple[str, bytes, str]] = ()) -> TestResponse:
    """The visitor posts the form (JSON answer), `changes` over the usual values."""
    return post_declared(app.test_client(), "/f/contact", {**VISITOR, **(changes or {})},
                         files=files)


def submitted(app: Flask, **changes: str) -> str:
    """The id of a submission the visitor posted and the app queued."""
    answer = post(app, changes)
    assert answer.status_code == 202, answer.get_data(as_text=True)
    return str(answer.get_json()["id"])


def webhooks(app: Flask) -> list[OutboxMail]:
    """The outbox's webhook deliveries, by id."""
    return [row for row in rows(app) if row.kind == "webhook"]


def the_webhook(app: Flask) -> OutboxMail:
    """The one webhook delivery in the outbox."""
    [row] = webhooks(app)
    return row


def attempts(app: Flask, mail_id: int) -> list[tuple[str, str]]:
    """Each attempt at one delivery: its outcome and reply."""
    with app.app_context():
        found = [(a.outcome, a.reply or "") for a in outbox.attempts_of(mail_id)]
        db.session.commit()
        return found


def deliver_all(app: Flask, passes: int = 6) -> None:
    """Worker passes, each retry made due at once, until nothing waits (or `passes` ran)."""
    for _ in range(passes):
        deliver_now(app)
        if not any(row.status in ("queued", "sending") for row in rows(app)):
            return
        make_due(app)


def verified(request: ReceivedRequest) -> Any:
    """The event a receiver holding the secret reads: standardwebhooks' verify, or it raises."""
    return Verifier(SECRET).verify(request.body, request.headers)


@pytest.mark.each_database
def test_the_standard_event_is_signed_and_carries_values_and_file_metadata(
        make_app, tmp_path, monkeypatch, database_url):
    """submission.created verifies with the library; fields as typed, files as metadata."""
    cv = b"Twenty years of engines; the bytes never leave the site.\n"
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()),
                   DATABASE_URL=database_url)
        answer = post(app, files=(("cv", cv, "cv.txt"),))
        assert answer.status_code == 202
        submission_id = answer.get_json()["id"]
        deliver_now(app)
        [request] = receiver.requests
    event = verified(request)
    assert request.headers["content-type"] == "application/json"
    assert request.headers["webhook-id"] == the_webhook(app).message_id
    assert the_webhook(app).status == "sent"
    assert event["type"] == "submission.created"
    data = event["data"]
    assert (data["id"], data["form"], data["verdict"], data["language"]) == (
        submission_id, "contact", "ham", "en")
    assert data["fields"] == {**VISITOR, "cv": ["cv.txt"]}
    assert data["files"] == [{"field": "cv", "name": "cv.txt",
                              "content_type": "text/plain; charset=utf-8", "size": len(cv),
                              "sha256": hashlib.sha256(cv).hexdigest()}]
    assert b"never leave" not in request.body


@pytest.mark.each_database
def test_a_retry_keeps_the_webhook_id_and_is_signed_again(
        make_app, tmp_path, monkeypatch, database_url):
    """500 then 200: two requests under one webhook-id, each verifying; both attempts logged."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()),
                   DATABASE_URL=database_url)
        receiver.answer_next("500")
        submitted(app)
        deliver_now(app)
        assert the_webhook(app).status == "queued"
        make_due(app)
        deliver_now(app)
        first, second = receiver.requests
    row = the_webhook(app)
    assert (row.status, row.attempts) == ("sent", 2)
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == row.message_id
    assert verified(first) == verified(second)
    assert [outcome for outcome, _ in attempts(app, row.id)] == ["transient", "sent"]
    assert attempts(app, row.id)[0][1] == "500 ok"


def test_a_429_is_not_tried_again_before_its_retry_after(make_app, tmp_path, monkeypatch):
    """Retry-After: 120 outweighs the 1-2 s backoff: the next attempt is due 120 s later."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()))
        receiver.answer_next("429")
        receiver.retry_after = "120"
        submitted(app)
        deliver_now(app)
        row = the_webhook(app)
        with app.app_context():
            [attempt] = outbox.attempts_of(row.id)
            tried_at = attempt.attempted_at
        assert row.status == "queued" and attempt.outcome == "transient"
        assert (timedelta(seconds=120) <= row.next_attempt_at - tried_at
                <= timedelta(seconds=121))
        deliver_now(app)  # not due: nothing is posted
        assert len(receiver.requests) == 1
        make_due(app)
        deliver_now(app)
        assert len(receiver.requests) == 2
    assert the_webhook(app).status == "sent"


def test_a_410_fails_at_once_and_is_never_tried_again(make_app, tmp_path, monkeypatch):
    """Gone: failed after one attempt, its answer logged; later passes post nothing."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()))
        receiver.mode, receiver.answer = "410", b"gone\x1b[31m"
        submitted(app)
        deliver_all(app)
        deliver_all(app)
        assert len(receiver.requests) == 1
    row = the_webhook(app)
    assert (row.status, row.attempts) == ("failed", 1)
    assert attempts(app, row.id) == [("failed", "410 gone\\x1b[31m")]


def test_a_redirect_is_not_followed_and_fails(make_app, tmp_path, monkeypatch):
    """302 to another receiver: failed, and the other receiver hears nothing."""
    with WebhookReceiver() as receiver, WebhookReceiver() as elsewhere:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()))
        receiver.mode, receiver.location = "redirect", elsewhere.url()
        submitted(app)
        deliver_all(app)
        assert len(receiver.requests) == 1 and elsewhere.requests == []
    row = the_webhook(app)
    assert row.status == "failed" and attempts(app, row.id)[0][1].startswith("302 ")


@pytest.mark.parametrize(("target", "reason"), [
    ("http://127.0.0.1:{port}/hook", "must start with https://"),
    ("https://127.0.0.1:{port}/hook", "127.0.0.1, a loopback address"),
    ("https://localhost:{port}/hook", "a loopback address"),
])
def test_a_private_target_is_refused_without_allow_private(
        make_app, tmp_path, monkeypatch, target, reason):
    """Without WEBHOOK_ALLOW_PRIVATE a loopback target is failed at once: no request is made."""
    with WebhookReceiver() as receiver:
        url = target.format(port=receiver.port)
        app = site(make_app, tmp_path, monkeypatch, hook(url), WEBHOOK_ALLOW_PRIVATE=False)
        submitted(app)
        deliver_all(app)
        assert receiver.requests == []
    row = the_webhook(app)
    assert (row.status, row.attempts) == ("failed", 1) and reason in (row.last_error or "")


def test_spam_is_never_queued(make_app, tmp_path, monkeypatch):
    """The honeypot filled in: no webhook delivery, not even for include_suspect."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url(), include_suspect=True))
        answer = post(app, {HONEYPOT: "https://spam.example/"})
        assert answer.status_code == 202
        deliver_all(app)
        assert receiver.requests == []
    with app.app_context():
        stored = db.session.get(Submission, answer.get_json()["id"])
        assert stored is not None and stored.verdict == "spam"
    assert rows(app) == []


def test_a_suspect_goes_only_to_webhooks_that_include_suspects(make_app, tmp_path, monkeypatch):
    """A link over CONTACT_MAX_LINKS=0 makes a suspect: /all hears of it, /ham does not."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch,
                   hook(receiver.url("/all"), include_suspect=True), hook(receiver.url("/ham")),
                   CONTACT_MAX_LINKS=0)
        suspect = submitted(app, message="See https://example.com/engine")
        ham = submitted(app)
        deliver_all(app)
        heard = {path: [(verified(r)["data"]["id"], verified(r)["data"]["verdict"])
                        for r in receiver.received(path)] for path in ("/all", "/ham")}
    assert sorted(heard["/all"]) == sorted([(suspect, "suspect"), (ham, "ham")])
    assert heard["/ham"] == [(ham, "ham")]


def test_a_refused_mail_does_not_hold_the_webhook(
        make_app, tmp_path, monkeypatch, smtp_server: SMTPTestServer):
    """The SMTP server refuses connections: the mail waits, the webhook is delivered."""
    smtp_server.mode = "down"
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()))
        submitted(app)
        deliver_now(app)
        assert len(receiver.requests) == 1
    mail, webhook = rows(app)
    assert (mail.kind, mail.status, webhook.status) == ("recipient", "queued", "sent")


def test_a_failing_webhook_does_not_hold_the_mail(
        make_app, tmp_path, monkeypatch, smtp_server: SMTPTestServer):
    """The receiver answers 500: the mail is sent, the webhook waits for its retry."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()))
        receiver.mode = "500"
        submitted(app)
        deliver_now(app)
        assert len(receiver.requests) == 1
    mail, webhook = rows(app)
    assert (mail.status, webhook.status) == ("sent", "queued")
    assert len(smtp_server.messages) == 1


def test_an_smtp_configuration_error_holds_the_mails_only(
        make_app, tmp_path, monkeypatch, smtp_server: SMTPTestServer):
    """MAIL_USERNAME set, a server offering no AUTH: the mails are held, and the webhooks of
    this submission and of the next are delivered all the same."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()),
                   MAIL_USERNAME="site@example.org", MAIL_PASSWORD="pa55-Word-c0ffee-9a1b")
        first = submitted(app)
        deliver_now(app)
        second = submitted(app)
        deliver_now(app)
        heard = [verified(request)["data"]["id"] for request in receiver.requests]
    assert heard == [first, second]
    assert [(row.kind, row.status, row.attempts) for row in rows(app)] == [
        ("recipient", "queued", 0), ("webhook", "sent", 1),
        ("recipient", "queued", 0), ("webhook", "sent", 1)]
    assert smtp_server.messages == []


def test_broken_mail_settings_are_heard_once_on_the_second_channel(
        make_app, tmp_path, monkeypatch, smtp_server: SMTPTestServer):
    """A configuration error fails no mail (they wait for the settings), yet the subscribers
    of delivery.failed hear of it once, with the error, however many mails it holds."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch,
                   hook(receiver.url("/alerts"), events=["delivery.failed"]),
                   MAIL_USERNAME="site@example.org", MAIL_PASSWORD="pa55-Word-c0ffee-9a1b")
        first = submitted(app)
        deliver_now(app)
        submitted(app)
        deliver_now(app)
        alerts = [verified(request) for request in receiver.received("/alerts")]
    assert [(a["type"], a["data"]["submission"], a["data"]["kind"]) for a in alerts] == [
        ("delivery.failed", first, "recipient")]
    assert "mail settings do not work" in alerts[0]["data"]["reason"]
    assert "AUTH" in alerts[0]["data"]["reason"]
    assert smtp_server.messages == []


@pytest.mark.each_database
def test_a_mail_refused_with_550_reaches_the_delivery_failed_webhooks(
        make_app, tmp_path, monkeypatch, smtp_server: SMTPTestServer, database_url):
    """550: the mail fails, submission.created is still delivered, and the subscribers of
    delivery.failed hear which delivery failed and why (signed; and in Slack's words)."""
    smtp_server.mode = "550"
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url("/crm")),
                   hook(receiver.url("/alerts"), events=["delivery.failed"]),
                   hook(receiver.url("/chat"), format="slack", secret_env=None,
                        events=["delivery.failed"]),
                   DATABASE_URL=database_url)
        submission_id = submitted(app)
        deliver_all(app)
        created = [verified(r)["type"] for r in receiver.received("/crm")]
        [alert] = [verified(r) for r in receiver.received("/alerts")]
        [chat] = [json.loads(r.body) for r in receiver.received("/chat")]
    assert created == ["submission.created"]
    assert alert["type"] == "delivery.failed"
    data = alert["data"]
    assert (data["submission"], data["kind"]) == (submission_id, "recipient")
    assert "550" in data["reason"] and "Rejected by policy" in data["reason"]
    assert chat["text"].startswith("*Delivery failed on Contact*\nThe owner’s mail could not")
    assert chat["text"].endswith(f"{BASE_URL}/admin/submissions/{submission_id}")
    assert {row.status for row in webhooks(app)} == {"sent"}


def test_a_failing_delivery_failed_webhook_does_not_notify_itself(
        make_app, tmp_path, monkeypatch):
    """/gone answers 410 to everything: its own failure is told to /gone and /alerts once;
    the failure of that notice is told to nobody, however many passes run."""
    with WebhookReceiver() as receiver:
        receiver.path_modes["/gone"] = "410"
        app = site(make_app, tmp_path, monkeypatch,
                   hook(receiver.url("/gone"), events=["submission.created", "delivery.failed"]),
                   hook(receiver.url("/alerts"), events=["delivery.failed"]))
        submitted(app)
        for _ in range(3):
            deliver_all(app)
        gone = [verified(r)["type"] for r in receiver.received("/gone")]
        [alert] = [verified(r)["data"] for r in receiver.received("/alerts")]
    assert gone == ["submission.created", "delivery.failed"]
    assert (alert["kind"], alert["reason"]) == ("webhook", "410 ok")
    assert sorted((row.event, row.status) for row in webhooks(app)) == [
        ("delivery.failed", "failed"), ("delivery.failed", "sent"),
        ("submission.created", "failed")]


def test_a_webhook_past_its_give_up_time_fails_and_is_told(make_app, tmp_path, monkeypatch):
    """WEBHOOK_GIVE_UP_HOURS=1 and Retry-After: 3600: the retry would come too late, so the
    delivery fails as expired, and the delivery.failed subscribers hear why."""
    with WebhookReceiver() as receiver:
        receiver.path_modes["/crm"], receiver.retry_after = "429", "3600"
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url("/crm")),
                   hook(receiver.url("/alerts"), events=["delivery.failed"]),
                   WEBHOOK_GIVE_UP_HOURS=1)
        submitted(app)
        deliver_all(app)
        [alert] = [verified(r)["data"] for r in receiver.received("/alerts")]
        assert len(receiver.received("/crm")) == 1
    crm = next(row for row in webhooks(app) if row.target == receiver.url("/crm"))
    assert (crm.status, crm.last_error) == ("failed", "expired: 429 ok")
    assert (alert["kind"], alert["reason"]) == ("webhook", "expired: 429 ok")


def test_a_webhook_dropped_from_the_forms_file_is_failed_unsent(make_app, tmp_path, monkeypatch):
    """Queued, then the file edited and the site restarted without it: failed, never posted."""
    with WebhookReceiver() as receiver:
        queued_by = site(make_app, tmp_path, monkeypatch, hook(receiver.url()))
        submitted(queued_by)
        edited = site(make_app, tmp_path, monkeypatch)
        deliver_all(edited)
        assert receiver.requests == []
    row = the_webhook(edited)
    assert (row.status, row.last_error) == ("failed", "this webhook is no longer in the forms file")


def test_slack_and_ntfy_notices_have_their_shapes(make_app, tmp_path, monkeypatch):
    """Slack: JSON with a `text` naming form, address, subject and console link; ntfy: plain
    text with a Title header and the link to click. Neither is signed without a secret."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch,
                   hook(receiver.url("/slack"), format="slack", secret_env=None),
                   hook(receiver.url("/ntfy"), format="ntfy", secret_env=None))
        submission_id = submitted(app, subject="Engines <@channel> & more")
        deliver_now(app)
        [slack] = receiver.received("/slack")
        [ntfy] = receiver.received("/ntfy")
    link = f"{BASE_URL}/admin/submissions/{submission_id}"
    assert slack.headers["content-type"] == "application/json"
    assert json.loads(slack.body) == {"text": "*New message on Contact*\n"
                                              "From: ada@example.com\n"
                                              "Subject: Engines &lt;@\u2060channel&gt; &amp; more\n"
                                              f"{link}"}
    assert ntfy.headers["content-type"] == "text/plain; charset=utf-8"
    assert ntfy.headers["title"] == "New message on Contact"
    assert ntfy.headers["click"] == link
    assert ntfy.body.decode() == "From: ada@example.com\nSubject: Engines <@channel> & more"
    assert "webhook-signature" not in slack.headers | ntfy.headers


@pytest.mark.timeout(60)
def test_a_slow_receiver_does_not_hold_the_mails(
        make_app, tmp_path, monkeypatch, smtp_server: SMTPTestServer):
    """The receiver takes 2 s over each webhook and the pool has one mail loop: the mails of
    submissions posted while it waits are all sent before it has answered twice."""
    first_arrived = threading.Event()

    def slowly(_request: ReceivedRequest) -> None:
        first_arrived.set()
        time.sleep(2)

    with WebhookReceiver() as receiver:
        receiver.on_request = slowly
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()), deliver=True,
                   DELIVERY_CONCURRENCY=1)
        for _ in range(3):
            submitted(app)
        wait_until(first_arrived.is_set, 15, "the first webhook at the receiver")
        for _ in range(3):
            submitted(app)
        wait_until(lambda: len(smtp_server.messages) == 6, 15, "every mail")
        assert len(receiver.requests) <= 2
        receiver.on_request = None


def test_a_webhook_queued_while_the_receiver_is_down_is_delivered_after_a_restart(
        make_app, tmp_path, monkeypatch):
    """Nothing listens: the delivery thread's attempt is transient; with that app stopped
    and the receiver up, a new app's thread delivers it, under the same webhook-id."""
    holder = reserved_port()  # refused meanwhile, and taken by no other test
    port = holder.getsockname()[1]
    url = f"http://127.0.0.1:{port}/hook"
    first = site(make_app, tmp_path, monkeypatch, hook(url), deliver=True)
    submission_id = submitted(first)
    wait_until(lambda: the_webhook(first).attempts >= 1, 15, "the first attempt")
    backend_of(first).stop()
    waiting = the_webhook(first)
    assert waiting.status == "queued" and "ConnectError" in (waiting.last_error or "")
    holder.close()
    with WebhookReceiver(port=port) as receiver:
        second = site(make_app, tmp_path, monkeypatch, hook(url), deliver=True)
        wait_until(lambda: the_webhook(second).status == "sent", 15, "the webhook sent")
        [request] = receiver.requests
    assert request.headers["webhook-id"] == waiting.message_id
    assert verified(request)["data"]["id"] == submission_id


@pytest.mark.timeout(90)
def test_the_celery_worker_delivers_a_webhook(make_app, tmp_path, monkeypatch, redis_broker,
                                              processes):
    """DELIVERY_BACKEND=celery: the POST queues a task, a real worker on Redis posts it."""
    celery = {"DELIVERY_BACKEND": "celery", "CELERY_BROKER_URL": redis_broker}
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()), deliver=True, **celery)
        log = tmp_path / "celery.log"
        env = worker_env(app, **celery, DELIVERY_CLAIM_SECONDS=5, WEBHOOK_ALLOW_PRIVATE="true",
                         CONTACT_FORMS_FILE=app.config["CONTACT_FORMS_FILE"])
        with log.open("ab") as out:
            processes.append(subprocess.Popen(
                [CELERY, "-A", "contact_site.celery_app", "worker", "--concurrency", "1",
                 "--loglevel", "INFO", "--without-gossip", "--without-mingle",
                 "--without-heartbeat"],
                cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
        submission_id = submitted(app)
        wait_until(lambda: the_webhook(app).status == "sent", 60, "the worker's delivery")
        [request] = receiver.requests
    assert verified(request)["data"]["id"] == submission_id
    assert request.headers["webhook-id"] == the_webhook(app).message_id
    assert "contact_site.deliver_due" in log.read_text()


@pytest.mark.each_database
def test_a_submission_deleted_mid_batch_has_no_more_webhooks_posted(
        make_app, tmp_path, monkeypatch, database_url):
    """Deleted while its first webhook waits for an answer: the second, claimed in the same
    batch, is never posted, and nothing of either is left."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url("/first")),
                   hook(receiver.url("/second")), DATABASE_URL=database_url)
        submission_id = submitted(app)

        def delete_once(request: ReceivedRequest) -> None:
            receiver.on_request = None
            with app.app_context():
                assert delete_submission(submission_id) is not None

        receiver.on_request = delete_once
        deliver_all(app)
        assert [request.path for request in receiver.requests] == ["/first"]
    assert rows(app) == []



def test_a_pass_writes_its_outcomes_together(make_app, tmp_path, monkeypatch, smtp_server):
    """Five deliveries posted in one pass: their five attempts are written in one statement
    (group commit), each row sent with its own attempt."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()))
        for number in range(5):
            submitted(app, message=f"About the engine, part {number}.")
        with app.app_context():
            engine = db.engine
        written: list[str] = []

        def note(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
            if statement.startswith("INSERT INTO delivery_attempt"):
                written.append(statement)

        event.listen(engine, "before_cursor_execute", note)
        try:
            with app.app_context():
                webhook_delivery.deliver_due_webhooks()
        finally:
            event.remove(engine, "before_cursor_execute", note)
        assert len(receiver.requests) == 5
    assert len(written) == 1
    hooks = webhooks(app)
    assert [row.status for row in hooks] == ["sent"] * 5
    assert [attempts(app, row.id) for row in hooks] == [[("sent", "200 ok")]] * 5


def test_a_stopped_pass_gives_back_what_it_did_not_post(make_app, tmp_path, monkeypatch):
    """The worker is told to stop during the first POST: that one is written sent, the
    others are queued again at once, unclaimed and with no attempt counted."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()))
        for number in range(3):
            submitted(app, message=f"About the engine, part {number}.")
        stop = threading.Event()
        receiver.on_request = lambda request: stop.set()
        with app.app_context():
            assert webhook_delivery.deliver_due_webhooks(stop) == 3
        assert len(receiver.requests) == 1
    hooks = webhooks(app)
    assert sorted(row.status for row in hooks) == ["queued", "queued", "sent"]
    assert all(row.claim_token is None and row.attempts == 0
               for row in hooks if row.status == "queued")


@pytest.mark.parametrize(("claimed", "seconds", "size"), [
    (0, 0.0, webhook_delivery.WEBHOOK_BATCH),  # nothing measured yet
    (10, 0.01, webhook_delivery.MAX_WEBHOOK_BATCH),  # a fast receiver: the most
    (10, 10.0, 5),  # a second each: about five seconds' worth
    (2, 60.0, 1),  # a receiver at its deadline: one at a time
])
def test_a_pass_is_sized_by_the_rate_of_the_last(claimed, seconds, size):
    """The next claim holds about BATCH_SECONDS of posting at the last pass's rate."""
    assert webhook_delivery.claim_size(claimed, seconds) == size

def test_a_failed_webhook_requeued_gets_the_webhook_give_up_time(
        make_app, tmp_path, monkeypatch):
    """`outbox retry` after a 410: queued again under WEBHOOK_GIVE_UP_HOURS, not the mails'
    DELIVERY_GIVE_UP_HOURS, and delivered under its webhook-id once the receiver is back."""
    with WebhookReceiver() as receiver:
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()),
                   WEBHOOK_GIVE_UP_HOURS=3, DELIVERY_GIVE_UP_HOURS=100)
        receiver.answer_next("410")
        submitted(app)
        deliver_all(app)
        failed = the_webhook(app)
        assert failed.status == "failed"
        with app.app_context():
            assert outbox.requeue([failed.id]) == 1
        queued = the_webhook(app)
        assert queued.expires_at - queued.next_attempt_at == timedelta(hours=3)
        deliver_all(app)
        assert [r.headers["webhook-id"] for r in receiver.requests] == [failed.message_id] * 2
    assert the_webhook(app).status == "sent"


def test_one_pass_posts_to_each_receiver_over_one_connection(
        make_app, tmp_path, monkeypatch, smtp_server: SMTPTestServer):
    """Three submissions, two webhooks each: one connection per receiver for the pass,
    closed when the pass ends; every delivery sent once."""
    with WebhookReceiver() as first, WebhookReceiver() as second:
        app = site(make_app, tmp_path, monkeypatch, hook(first.url()), hook(second.url()))
        for number in range(3):
            submitted(app, message=f"About the engine, part {number}.")
        deliver_now(app)
        assert (len(first.requests), len(second.requests)) == (3, 3)
        assert (first.connections, second.connections) == (1, 1)
        wait_until(lambda: first.open_connections == second.open_connections == 0, 5,
                   "the pass to close its connections")
    assert [row.status for row in webhooks(app)] == ["sent"] * 6


def test_a_receiver_closing_each_connection_gets_every_delivery_once(
        make_app, tmp_path, monkeypatch, smtp_server: SMTPTestServer):
    """Connection: close after each answer: a connection per delivery, none posted twice."""
    with WebhookReceiver() as receiver:
        receiver.close_after_answer = True
        app = site(make_app, tmp_path, monkeypatch, hook(receiver.url()))
        for number in range(3):
            submitted(app, message=f"About the engine, part {number}.")
        deliver_now(app)
        ids = [request.headers["webhook-id"] for request in receiver.requests]
        assert len(ids) == len(set(ids)) == receiver.connections == 3
    assert [row.status for row in webhooks(app)] == ["sent"] * 3
