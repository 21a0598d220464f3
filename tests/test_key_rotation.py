"""Rotating SECRET_KEY loses nothing in flight: with the old key in SECRET_KEY_FALLBACKS, a page
served before the change posts after it and is delivered, the owner stays signed in, and a
message seen before the change is still a duplicate (docs/guarantees.md, "Secrets only from
the environment").

The end-to-end cases run gunicorn as an operator does, stop it, and start it again with the
new key, against the real SMTP test server; each also runs without the fallback, where the
landed product filed the visitor's message as spam (`time_tampered`) and sent nothing.
"""

from __future__ import annotations

import http.client
import json
import re
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from contact_site import create_app
from contact_site.config import ConfigError
from contact_site.delivery.models import OutboxMail
from contact_site.extensions import db
from contact_site.keys import secret_keys
from contact_site.submissions.models import Submission
from support.admin import create_owner
from support.forms import form_tokens, post_form
from support.processes import start_gunicorn, stop_process
from support.settings import base_config
from support.spam import LAYERS_ON, solve

OLD_KEY = "the-key-before-the-rotation-0123456789"
NEW_KEY = "the-key-after-the-rotation-9876543210"
OWNER_ADDRESS = "sales@example.com"
HIDDEN = re.compile(r'name="(csrf_token|submission_key|form_time)" type="hidden" '
                    r'value="([^"]*)"')
MIN_FILL_SECONDS = LAYERS_ON["CONTACT_MIN_FILL_SECONDS"]


class Browser:
    """A visitor's browser over plain HTTP: it keeps its cookies when the server restarts."""

    def __init__(self) -> None:
        self.port = 0
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str,
                fields: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
        """One request with the cookies held; the status, the headers and the body."""
        headers = {"Accept": "text/html"}
        body = urllib.parse.urlencode(fields) if fields is not None else None
        if body is not None:
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body, headers)
            response = connection.getresponse()
            text = response.read().decode()
        finally:
            connection.close()
        for cookie in response.msg.get_all("Set-Cookie") or []:
            name, _, value = cookie.split(";", 1)[0].partition("=")
            if value and "1970" not in cookie:
                self.cookies[name] = value
            else:
                self.cookies.pop(name, None)
        return response.status, dict(response.getheaders()), text


@pytest.fixture
def site(make_app: Callable[..., Flask], tmp_path: Path) -> Iterator[Any]:
    """The app's database, and `serve(key, fallbacks)`: (re)start gunicorn with that key."""
    app = make_app(deliver=False)
    running: list[Any] = []

    def serve(key: str, fallbacks: str | None = None) -> int:
        while running:  # a restart: the old server is gone before the new one starts
            stop_process(running.pop(), timeout=30)
        settings: dict[str, Any] = {**LAYERS_ON, "SECRET_KEY": key}
        if fallbacks is not None:
            settings["SECRET_KEY_FALLBACKS"] = fallbacks
        process, _log, port = start_gunicorn(app, tmp_path, **settings)
        running.append(process)
        return port

    yield app, serve
    while running:
        stop_process(running.pop(), timeout=30)


def open_page(browser: Browser) -> dict[str, str]:
    """The form's hidden fields and a solved proof from `GET /altcha`, as the page gets them."""
    status, _, page = browser.request("GET", "/")
    assert status == 200
    fields = dict(HIDDEN.findall(page))
    assert set(fields) == {"csrf_token", "submission_key", "form_time"}, fields
    status, _, challenge = browser.request("GET", "/altcha")
    assert status == 200
    return {**fields, "altcha": solve(json.loads(challenge))}


def message_fields(visitor: str, subject: str) -> dict[str, str]:
    """What the visitor typed."""
    return {"recipient": "sales", "name": "Ada Lovelace", "email": visitor,
            "subject": subject, "message": "About the analytical engine.", "website": ""}


def submission_with(app: Flask, subject: str) -> Submission:
    """The stored submission with this subject, detached."""
    with app.app_context():
        found = db.session.scalars(select(Submission).where(Submission.subject == subject)).one()
        db.session.expunge(found)
        return found


def mails_of(app: Flask, submission_id: str) -> list[OutboxMail]:
    """The outbox rows of a submission."""
    with app.app_context():
        return list(db.session.scalars(select(OutboxMail).where(
            OutboxMail.submission_id == submission_id)))


def wait_out_the_minimum(served_at: float) -> None:
    """A person takes longer than the time trap's minimum to write."""
    time.sleep(max(0.0, served_at + MIN_FILL_SECONDS + 1 - time.monotonic()))


def test_a_page_served_before_the_rotation_is_delivered_after_it(site, smtp_server):
    """Page, CSRF token and proof of work under the old key; the post after the restart with
    SECRET_KEY_FALLBACKS is ham, and both mails reach the SMTP server."""
    app, serve = site
    browser, visitor, subject = Browser(), f"ada.{uuid.uuid4().hex[:8]}@example.com", "Engines"
    browser.port = serve(OLD_KEY)
    tokens, served_at = open_page(browser), time.monotonic()
    browser.port = serve(NEW_KEY, fallbacks=OLD_KEY)
    wait_out_the_minimum(served_at)

    status, headers, _ = browser.request("POST", "/", {**message_fields(visitor, subject),
                                                       **tokens})

    assert (status, headers.get("Location")) == (303, "/thanks")
    stored = submission_with(app, subject)
    assert (stored.verdict, stored.verdict_reasons) == ("ham", "")
    received = {tuple(mail.rcpt_tos): mail.message for mail in smtp_server.wait_for(2, 30)}
    assert set(received) == {(OWNER_ADDRESS,), (visitor,)}
    owner_mail = received[(OWNER_ADDRESS,)]
    assert subject in str(owner_mail["Subject"]) and "spam" not in str(owner_mail["Subject"])
    assert "analytical engine" in owner_mail.get_body(("plain",)).get_content()
    assert visitor in str(received[(visitor,)]["To"])


def test_without_the_fallback_the_same_visitor_is_filed_as_spam(site, smtp_server):
    """The landed behaviour, kept as the proof that the test above can fail: the old token is
    refused (400, the message kept in a fresh form), and sent again from that page it is
    filed as spam (`time_tampered`) and nothing is sent."""
    app, serve = site
    browser, visitor, subject = Browser(), f"bob.{uuid.uuid4().hex[:8]}@example.com", "Gears"
    browser.port = serve(OLD_KEY)
    tokens, served_at = open_page(browser), time.monotonic()
    browser.port = serve(NEW_KEY)
    wait_out_the_minimum(served_at)
    typed = message_fields(visitor, subject)

    status, _, page = browser.request("POST", "/", {**typed, **tokens})
    assert status == 400 and "analytical engine" in page
    kept = dict(HIDDEN.findall(page))  # the page keeps the time it was first served
    assert kept["form_time"] == tokens["form_time"]
    fresh_proof = solve(json.loads(browser.request("GET", "/altcha")[2]))
    status, headers, _ = browser.request("POST", "/", {**typed, **kept, "altcha": fresh_proof})

    assert (status, headers.get("Location")) == (303, "/thanks")  # looks like success
    stored = submission_with(app, subject)
    assert stored.verdict == "spam" and "time_tampered" in stored.verdict_reasons
    assert mails_of(app, stored.id) == [] and smtp_server.messages == []


def sign_in_console(browser: Browser) -> None:
    """The owner signs in through the console's own form."""
    status, _, page = browser.request("GET", "/admin/login")
    token = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', page)
    assert status == 200 and token
    status, headers, _ = browser.request("POST", "/admin/login", {
        "csrf_token": token.group(1), "username": "owner",
        "password": "correct horse battery staple"})
    assert (status, headers.get("Location")) == (303, "/admin/")


def console_token(browser: Browser) -> str:
    """The CSRF token of the console's outbox page."""
    status, _, page = browser.request("GET", "/admin/outbox")
    token = re.search(r'name="csrf_token"[^>]*?value="([^"]+)"', page)
    assert status == 200 and token
    return token.group(1)


@pytest.mark.parametrize(("fallbacks", "signed_in"), [(OLD_KEY, True), (None, False)],
                         ids=["with-fallback", "without"])
def test_the_console_session_survives_the_rotation(site, fallbacks, signed_in):
    """Signed in under the old key, the owner is still signed in after the restart, and a
    console form served before it still posts; without the fallback, back to the sign-in."""
    app, serve = site
    create_owner(app)
    browser = Browser()
    browser.port = serve(OLD_KEY)
    sign_in_console(browser)
    token = console_token(browser)
    browser.port = serve(NEW_KEY, fallbacks=fallbacks)

    status, headers, _ = browser.request("GET", "/admin/")
    retried = browser.request("POST", "/admin/outbox/retry", {"csrf_token": token})

    if signed_in:
        assert status == 200
        assert retried[0] == 303 and "/admin/outbox" in retried[1]["Location"]
    else:
        assert status in {302, 303} and "/admin/login" in headers["Location"]
        assert retried[0] in {302, 303, 400} and "/admin/outbox" not in retried[1].get(
            "Location", "")


def moved_client(after: Flask, before_client: Any) -> Any:
    """A client of `after` holding the public session cookie `before_client` was given."""
    client = after.test_client()
    cookie = before_client.get_cookie("session")
    assert cookie is not None, "the page set no session cookie"
    client.set_cookie("session", cookie.value)
    return client


@pytest.mark.parametrize(("after_settings", "status"), [
    ({"SECRET_KEY_FALLBACKS": OLD_KEY}, 202),
    ({}, 400),
    # Flask's session takes the fallback, so the raw token is found; but a CSRF key of its
    # own, without the old one, refuses the token signed with it.
    ({"SECRET_KEY_FALLBACKS": OLD_KEY, "WTF_CSRF_SECRET_KEY": NEW_KEY}, 400),
], ids=["with-fallback", "without", "session-fallback-alone"])
def test_a_csrf_token_issued_under_the_old_key_validates_after_rotation(
        make_app, after_settings, status):
    """The session cookie carries the token's raw value, the form its signed value: both are
    accepted under a fallback key."""
    before = make_app(deliver=False, SECRET_KEY=OLD_KEY)
    client = before.test_client()
    tokens = form_tokens(client)
    after = make_app(deliver=False, SECRET_KEY=NEW_KEY, **after_settings)

    answer = post_form(moved_client(after, client), json=True, tokens=tokens)

    assert answer.status_code == status, answer.get_json()
    if status == 400:
        assert "csrf_token" in answer.get_json()["errors"]


@pytest.mark.parametrize(("fallbacks", "duplicate"), [(OLD_KEY, True), (None, False)],
                         ids=["with-fallback", "without"])
def test_a_duplicate_seen_under_the_old_key_is_recognised_after_rotation(
        make_app, fallbacks, duplicate):
    """The duplicate rule's fingerprints are keyed: each key of SECRET_KEY_FALLBACKS is tried."""
    layers = {"CONTACT_DUPLICATE_HOURS": 24}
    before = make_app(deliver=False, SECRET_KEY=OLD_KEY, **layers)
    assert post_form(before.test_client(), json=True, subject="First").status_code == 202
    rotation = {"SECRET_KEY_FALLBACKS": fallbacks} if fallbacks else {}
    after = make_app(deliver=False, SECRET_KEY=NEW_KEY, **rotation, **layers)

    assert post_form(after.test_client(), json=True, subject="Again").status_code == 202

    assert ("duplicate" in submission_with(after, "Again").verdict_reasons) is duplicate


def test_the_fallbacks_are_read_from_the_environment_as_a_list(monkeypatch, tmp_path,
                                                               smtp_server):
    """Comma-separated previous keys, spaces ignored; Flask's session signing wants a list."""
    monkeypatch.setenv("SECRET_KEY_FALLBACKS", f" {OLD_KEY} ,second-previous-key-abcdefgh,")
    app = create_app({**base_config(tmp_path, smtp_server), "SECRET_KEY": NEW_KEY})
    assert app.config["SECRET_KEY_FALLBACKS"] == [OLD_KEY, "second-previous-key-abcdefgh"]
    assert secret_keys(app) == [NEW_KEY, OLD_KEY, "second-previous-key-abcdefgh"]
    monkeypatch.delenv("SECRET_KEY_FALLBACKS")
    assert create_app(base_config(tmp_path, smtp_server)).config["SECRET_KEY_FALLBACKS"] == []


@pytest.mark.parametrize("fallbacks", [
    "changeme", "short-key", f"{OLD_KEY},your-secret-key-here-0000", "aaaaaaaaaaaaaaaaaaaa",
], ids=["placeholder", "short", "one-of-two", "repetitive"])
def test_a_placeholder_fallback_is_refused_in_one_line(tmp_path, smtp_server, fallbacks):
    """Weak keys are refused at start-up with one line naming the variable, never the key."""
    config = {**base_config(tmp_path, smtp_server), "SECRET_KEY_FALLBACKS": fallbacks}
    with pytest.raises(ConfigError) as refused:
        create_app(config)
    text = str(refused.value.code)
    assert "SECRET_KEY_FALLBACKS" in text and "\n" not in text
    assert not any(key in text for key in fallbacks.split(","))
