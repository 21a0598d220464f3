"""The console's webhook deliveries: listed apart from the mails with every attempt, sent again
under a new webhook-id, counted and retried on the outbox page, removed with their message.

A declared form with two webhooks (a CRM and a chat service, each URL holding a token) on
real loopback receivers; deliveries run as a worker runs them (support.outbox.deliver_now).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, update
from standardwebhooks.webhooks import Webhook as Verifier

from contact_site.admin.audit import AuditEntry
from contact_site.database import utcnow
from contact_site.delivery import outbox
from contact_site.delivery.models import MailKind, OutboxMail, Status
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.admin import OWNER, PASSWORD, owner_client, post_action
from support.browser import axe_violations
from support.browser_server import LiveServer
from support.factories import store_declared
from support.forms_files import write_forms
from support.outbox import deliver_now, mails_of, make_due
from support.webhook_receiver import WebhookReceiver

SECRET_ENV = "CONSOLE_WEBHOOK_SECRET"
SECRET = "whsec_" + base64.b64encode(bytes(range(32))).decode()
# Where each webhook posts, on its receiver: tokens in the path and the query, which the
# console never shows.
CRM_PATH, CHAT_PATH = "/hooks/crm-t0ken?key=k3y-in-query", "/services/T0/B0/sl4ck-t0ken"
TOKENS = ("crm-t0ken", "k3y-in-query", "sl4ck-t0ken")
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
  name = "subject"
  type = "text"
  label = "Subject"

  [[forms.fields]]
  name = "message"
  type = "textarea"
  label = "Message"
  required = true

  [[forms.webhooks]]
  url = "{crm}"
  secret_env = "{secret_env}"

  [[forms.webhooks]]
  url = "{chat}"
  format = "slack"
  secret_env = "{secret_env}"
"""
VISITOR = {"email": "ada@example.com", "subject": "Engines", "message": "About the engine."}


@dataclass
class Site:
    """The app serving FORM, its two receivers, and the owner's signed-in client."""

    app: Flask
    crm: WebhookReceiver
    chat: WebhookReceiver
    client: FlaskClient


@pytest.fixture
def site(make_app: Callable[..., Flask], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
         database_url: str) -> Iterator[Site]:
    """The site with its webhooks' secret in the environment, private targets allowed (the
    receivers are on 127.0.0.1), no delivery thread: the test delivers."""
    monkeypatch.setenv(SECRET_ENV, SECRET)
    with WebhookReceiver() as crm, WebhookReceiver() as chat:
        path = write_forms(tmp_path / "site", FORM.format(
            crm=crm.url(CRM_PATH), chat=chat.url(CHAT_PATH), secret_env=SECRET_ENV))
        app = make_app(deliver=False, DATABASE_URL=database_url,
                       CONTACT_FORMS_FILE=str(path), WEBHOOK_ALLOW_PRIVATE=True)
        yield Site(app, crm, chat, owner_client(app))


def webhooks_of(app: Flask, submission_id: str) -> list[OutboxMail]:
    """The submission's webhook deliveries, by id, detached."""
    return [row for row in mails_of(app, submission_id) if row.kind == MailKind.WEBHOOK]


def delivered_once_each(site: Site) -> str:
    """A submission whose CRM delivery failed once (500) then went (200), and whose chat
    delivery was refused for good (410); its id."""
    submission_id = store_declared(site.app, "contact", VISITOR)
    site.crm.mode, site.crm.answer = "500", b"<b>busy</b>\x1b[2J"
    site.chat.mode, site.chat.answer = "410", b"gone"
    deliver_now(site.app)
    site.crm.mode, site.crm.answer = "ok", b"accepted"
    make_due(site.app)
    deliver_now(site.app)
    crm, chat = webhooks_of(site.app, submission_id)
    assert (crm.status, chat.status) == (Status.SENT, Status.FAILED)
    return submission_id


def page(client: FlaskClient, path: str) -> str:
    """A console page's HTML, after checking it answered 200."""
    response = client.get(path)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def send_again(client: FlaskClient, submission_id: str, delivery_id: int) -> Any:
    """Press "Send again" on one webhook delivery (a POST with the page's CSRF token)."""
    return post_action(client, f"/admin/submissions/{submission_id}/webhooks/{delivery_id}"
                               "/send-again")


def audit_lines(app: Flask) -> list[tuple[str, str | None, str]]:
    """(action, submission id, detail) of every audit line, oldest first."""
    with app.app_context():
        return [(row.action, row.submission_id, row.detail) for row in db.session.scalars(
            select(AuditEntry).order_by(AuditEntry.id))]


def state_counts(html: str) -> list[dict[str, int]]:
    """The counts by state of each group of the outbox page (mails, then webhooks)."""
    groups = re.findall(r'<dl class="outbox-counts">(.*?)</dl>', html, re.S)
    return [{state: int(count) for state, count in re.findall(
        r'state-(\w+)">[^<]*</span></dt><dd>(\d+)</dd>', group)} for group in groups]


def attempts_shown(html: str, delivery_id: int) -> list[tuple[str, str]]:
    """(outcome, status and answer) of each attempt the detail shows for one delivery."""
    start = html.index(f'<section class="console-mail console-webhook" '
                       f'aria-labelledby="webhook-{delivery_id}">')
    section = html[start:html.index("</section>", start)]
    return re.findall(r'data-label="Outcome">([^<]*)</td>\s*<td data-label="Status and answer">'
                      r'<code class="smtp-reply">([^<]*)</code>', section)


def assert_no_token(html: str) -> None:
    """No part of a webhook URL past its first path segment reached the page."""
    assert not [token for token in TOKENS if token in html]


# -- the detail --------------------------------------------------------------------------

@pytest.mark.each_database
def test_the_detail_lists_webhook_deliveries_apart_with_every_attempt(site: Site) -> None:
    """Mails first, then each webhook delivery: its target cut short, event, state, webhook-id
    and every attempt with its status and answer, escaped."""
    submission_id = delivered_once_each(site)
    html = page(site.client, f"/admin/submissions/{submission_id}")
    assert html.index("<h2>Mails</h2>") < html.index("Every attempt at this mail") \
        < html.index("<h2>Webhooks</h2>") < html.index("Every attempt at this webhook delivery")
    assert html.count("Every attempt at this mail") == 1  # the owner's mail alone
    assert html.count("Every attempt at this webhook delivery") == 2
    crm, chat = webhooks_of(site.app, submission_id)
    for row, shown, state in ((crm, f"http://127.0.0.1:{site.crm.port}/…", "sent"),
                              (chat, f"http://127.0.0.1:{site.chat.port}/…", "failed")):
        heading = re.search(rf'<h3 id="webhook-{row.id}">(.*?)</h3>', html, re.S)
        assert heading, f"no section for delivery {row.id}"
        assert heading.group(1) == (f"<code>submission.created</code> to <span class=\"address\">"
                                    f"{shown}</span>: <span class=\"state state-{state}\">"
                                    f"{state}</span>")
        assert f"<code>{row.message_id}</code>" in html
    assert attempts_shown(html, crm.id) == [("transient", "500 &lt;b&gt;busy&lt;/b&gt;\\x1b[2J"),
                                            ("sent", "200 accepted")]
    assert attempts_shown(html, chat.id) == [("failed", "410 gone")]
    assert "\x1b" not in html
    assert_no_token(html)
    archive = page(site.client, "/admin/")
    assert 'Webhook: <span class="state state-failed">failed' in archive


@pytest.mark.each_database
def test_send_again_queues_a_new_delivery_with_a_new_webhook_id(site: Site) -> None:
    """Same target, event and payload, a new webhook-id, an audit line naming no URL; posted
    and signed like the first."""
    submission_id = delivered_once_each(site)
    _crm, chat = webhooks_of(site.app, submission_id)
    response = send_again(site.client, submission_id, chat.id)
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/admin/submissions/{submission_id}")
    again = webhooks_of(site.app, submission_id)[-1]
    assert again.id not in (chat.id, _crm.id)
    assert (again.target, again.event, again.payload, again.status) == (
        chat.target, chat.event, chat.payload, Status.QUEUED)
    assert again.message_id.startswith("msg_") and again.message_id != chat.message_id
    [line] = [line for line in audit_lines(site.app) if line[0] == "resend webhook"]
    assert line[:2] == ("resend webhook", submission_id)
    assert str(chat.id) in line[2] and again.message_id in line[2]
    assert_no_token(line[2])
    assert "A new delivery of this webhook is queued." in page(
        site.client, f"/admin/submissions/{submission_id}")
    site.chat.mode = "ok"
    site.chat.requests.clear()
    deliver_now(site.app)
    [posted] = site.chat.requests
    assert posted.headers["webhook-id"] == again.message_id
    Verifier(SECRET).verify(posted.body, posted.headers)
    assert webhooks_of(site.app, submission_id)[-1].status == Status.SENT
    assert webhooks_of(site.app, submission_id)[1].status == Status.FAILED  # kept as it was


def test_send_again_needs_the_pages_token(site: Site) -> None:
    """Without the CSRF token the POST is refused and nothing is queued."""
    submission_id = store_declared(site.app, "contact", VISITOR)
    first = webhooks_of(site.app, submission_id)[0]
    response = site.client.post(f"/admin/submissions/{submission_id}/webhooks/{first.id}"
                                "/send-again")
    assert response.status_code == 400
    assert len(webhooks_of(site.app, submission_id)) == 2


def test_send_again_is_refused_for_spam_and_for_a_webhook_no_longer_declared(
        site: Site) -> None:
    """Spam never reaches a webhook, even by the owner's click; a URL the forms file no longer
    names is not posted to again. Either way nothing is queued and the owner is told."""
    submission_id = store_declared(site.app, "contact", VISITOR)
    first = webhooks_of(site.app, submission_id)[0]
    with site.app.app_context():
        gone = outbox.enqueue_webhook(submission_id, "https://old.example.com/hook",
                                      "submission.created")
        db.session.commit()
        gone_id = gone.id
    response = send_again(site.client, submission_id, gone_id)
    assert response.status_code == 303
    assert "This webhook is no longer in the forms file. Nothing was queued." in page(
        site.client, f"/admin/submissions/{submission_id}")
    assert post_action(site.client, f"/admin/submissions/{submission_id}/spam"
                       ).status_code == 303
    html = page(site.client, f"/admin/submissions/{submission_id}")
    assert "Send again" not in html
    assert send_again(site.client, submission_id, first.id).status_code == 303
    assert "webhooks never receive spam" in page(site.client,
                                                  f"/admin/submissions/{submission_id}")
    assert len(webhooks_of(site.app, submission_id)) == 3
    assert [line for line in audit_lines(site.app) if line[0] == "resend webhook"] == []


def test_send_again_of_another_messages_delivery_or_of_a_mail_is_a_404(site: Site) -> None:
    """The delivery must be one of this message's webhook deliveries."""
    mine = store_declared(site.app, "contact", VISITOR)
    other = store_declared(site.app, "contact", {**VISITOR, "subject": "Other"})
    theirs = webhooks_of(site.app, other)[0]
    [mail] = [row for row in mails_of(site.app, mine) if row.kind == MailKind.OWNER]
    for delivery_id in (theirs.id, mail.id, 999_999):
        assert send_again(site.client, mine, delivery_id).status_code == 404
    assert len(webhooks_of(site.app, mine)) == len(webhooks_of(site.app, other)) == 2


# -- the outbox page ---------------------------------------------------------------------

@pytest.mark.each_database
def test_the_outbox_counts_webhooks_beside_mails_and_retries_a_failed_one(site: Site) -> None:
    """Counts by state for mails and for webhook deliveries apart; the failed delivery listed
    with its event, target cut short and last answer; "try again" requeues it and it goes."""
    submission_id = delivered_once_each(site)
    html = page(site.client, "/admin/outbox")
    assert state_counts(html) == [{"queued": 0, "sending": 0, "sent": 1, "failed": 0},
                                  {"queued": 0, "sending": 0, "sent": 1, "failed": 1}]
    failed = html[html.index("<h3>Failed webhook deliveries</h3>"):]
    assert (f"<code>submission.created</code> to <span class=\"address\">"
            f"http://127.0.0.1:{site.chat.port}/…</span>") in failed
    assert "410 gone" in failed and "No mail has failed." in html
    assert_no_token(html)
    response = post_action(site.client, "/admin/outbox/retry")
    assert response.status_code == 303
    chat = webhooks_of(site.app, submission_id)[1]
    hours = site.app.config["WEBHOOK_GIVE_UP_HOURS"]
    assert chat.status == Status.QUEUED  # given WEBHOOK_GIVE_UP_HOURS again, as when queued
    assert abs(chat.expires_at - utcnow() - timedelta(hours=hours)) < timedelta(minutes=5)
    assert ("retry", None, "0 mail(s) requeued, 1 webhook(s)") in audit_lines(site.app)
    assert "1 failed webhook delivery queued again." in page(site.client, "/admin/outbox")
    site.chat.mode = "ok"
    deliver_now(site.app)
    assert webhooks_of(site.app, submission_id)[1].status == Status.SENT
    assert state_counts(page(site.client, "/admin/outbox"))[1]["sent"] == 2


def test_without_webhooks_the_outbox_page_shows_mails_alone(
        make_app: Callable[..., Flask]) -> None:
    """A site whose forms declare no webhook, and none queued: no webhook section."""
    app = make_app(deliver=False)
    html = page(owner_client(app), "/admin/outbox")
    assert "<h2>Mails</h2>" in html and "Webhooks" not in html
    assert len(state_counts(html)) == 1


# -- removal -----------------------------------------------------------------------------

def claim(app: Flask, row_id: int) -> None:
    """Put a delivery in a worker's hand, as a claim does."""
    with app.app_context():
        db.session.execute(update(OutboxMail).where(OutboxMail.id == row_id).values(
            status=Status.SENDING, claim_token="a-worker",
            claimed_until=utcnow() + timedelta(minutes=5)))
        db.session.commit()


def outbox_rows(app: Flask) -> int:
    """How many outbox rows are left."""
    with app.app_context():
        return len(list(db.session.scalars(select(OutboxMail.id))))


@pytest.mark.each_database
def test_delete_takes_the_webhook_deliveries_and_says_which_may_have_gone(site: Site) -> None:
    """One delivery in a worker's hand (it may be posting: a webhook delivery is not marked
    in hand) counts as already being handed over; the mail and the other are cancelled."""
    submission_id = store_declared(site.app, "contact", VISITOR)
    claim(site.app, webhooks_of(site.app, submission_id)[0].id)
    response = post_action(site.client, f"/admin/submissions/{submission_id}/delete")
    assert response.status_code == 303
    said = page(site.client, "/admin/")
    assert ("The message, its mails and webhook deliveries, their history and its files are "
            "deleted. Mails and webhook deliveries not yet sent: 2 cancelled, 1 already being "
            "handed over.") in said
    assert outbox_rows(site.app) == 0


@pytest.mark.each_database
def test_erasure_counts_webhook_deliveries_in_its_report(site: Site) -> None:
    """The report names the webhooks beside the mails; queued ones are cancelled."""
    store_declared(site.app, "contact", VISITOR)
    store_declared(site.app, "contact", {**VISITOR, "email": "grace@example.com"})
    response = post_action(site.client, "/admin/erase", address="ADA@example.com")
    assert response.status_code == 303
    said = page(site.client, "/admin/erase")
    assert ("erased 1 submission(s), 1 mail(s) and 2 webhook(s) (3 cancelled, 0 already being "
            "handed over), 0 delivery attempt(s)") in said
    with site.app.app_context():
        left = list(db.session.scalars(select(Submission.email)))
    assert left == ["grace@example.com"] and outbox_rows(site.app) == 3


# -- in a browser ------------------------------------------------------------------------

@pytest.mark.browser
@pytest.mark.timeout(120)
@pytest.mark.parametrize("width", [375, 1280])
def test_the_webhook_pages_pass_axe_at_phone_and_desktop_width(
        site: Site, open_page: Callable[..., Any], width: int) -> None:
    """The detail with its webhook deliveries and the outbox page with its webhook section:
    axe-core finds nothing, nothing scrolls sideways, no script error."""
    submission_id = delivered_once_each(site)
    with LiveServer(site.app) as live:
        watched = open_page(width=width)
        browser_page = watched.page
        browser_page.goto(f"{live.url}/admin/login")
        browser_page.get_by_label("Username").fill(OWNER)
        browser_page.get_by_label("Password").fill(PASSWORD)
        with browser_page.expect_navigation(url=f"{live.url}/admin/"):
            browser_page.get_by_role("button", name="Sign in").click()
        for path in (f"/admin/submissions/{submission_id}", "/admin/outbox"):
            browser_page.goto(live.url + path)
            assert axe_violations(browser_page) == [], path
            assert browser_page.evaluate("document.documentElement.scrollWidth") <= width, path
        watched.assert_clean()
