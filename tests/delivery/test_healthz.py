"""/healthz tells the public its status alone; the operator (HEALTHZ_TOKEN, or a direct
loopback client) also gets the outbox counts, the verdicts and the SMTP state."""

from __future__ import annotations

import base64
import http.client
import json
from typing import Any

import pytest
from sqlalchemy import update

from contact_site.database import utcnow
from contact_site.delivery.models import SMTPHealth
from contact_site.extensions import db

TOKEN = "a-long-random-healthz-token-for-tests"
# The mail server's words, which the public must never read.
SERVER_WORDS = "login refused: 535 5.7.8 mailbox owner@example.org locked"
DETAILS = {"status", "outbox", "mails", "webhooks", "smtp", "verdicts"}
PROXIED = {"X-Forwarded-For": "203.0.113.9"}


# The test's view of the database, with a standing SMTP configuration error in it.
pytestmark = [pytest.mark.manual_delivery, pytest.mark.usefixtures("smtp_error")]


@pytest.fixture
def smtp_error(app):
    """A standing SMTP configuration error, in the words of the mail server."""
    with app.app_context():
        db.session.execute(update(SMTPHealth).values(error=SERVER_WORDS, since=utcnow(),
                                                      failures=1))
        db.session.commit()


def healthz(port: int, headers: dict[str, str]) -> tuple[int, dict[str, Any], str]:
    """GET /healthz from 127.0.0.1: its status, its JSON and its Cache-Control."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/healthz", headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read()), response.getheader(
            "Cache-Control", "")
    finally:
        connection.close()


@pytest.mark.timeout(90)
def test_under_gunicorn_the_public_gets_the_status_and_the_operator_the_details(gunicorn):
    """Behind a proxy on the same host (PROXY_FIX_X_FOR=1): a proxied visitor reads the
    status alone, with or without a wrong token; the right token or a direct loopback
    client reads the counts and the SMTP state."""
    _process, _log, port = gunicorn(PROXY_FIX_X_FOR=1, HEALTHZ_TOKEN=TOKEN)
    public = {
        "proxied": PROXIED,
        "proxied claiming loopback": {"X-Forwarded-For": "127.0.0.1"},
        "wrong token": {**PROXIED, "Authorization": f"Bearer {TOKEN}x"},
        "token cut short": {**PROXIED, "Authorization": f"Bearer {TOKEN[:-1]}"},
        "token as a password": {**PROXIED, "Authorization": "Basic " + base64.b64encode(
            f"x:{TOKEN}".encode()).decode()},
    }
    for case, headers in public.items():
        status, body, cache = healthz(port, headers)
        assert (status, body) == (200, {"status": "ok"}), case
        assert cache == "no-store"
    operator = {"token": {**PROXIED, "Authorization": f"Bearer {TOKEN}"},
                "direct loopback": {}}
    for case, headers in operator.items():
        status, body, cache = healthz(port, headers)
        assert (status, set(body)) == (200, DETAILS), case
        assert body["smtp"]["error"] == SERVER_WORDS, case
        assert cache == "no-store"


def test_without_a_token_only_a_direct_loopback_client_gets_the_details(app):
    """HEALTHZ_TOKEN unset: any Bearer is ignored; the peer's own address decides."""
    client = app.test_client()
    assert set(client.get("/healthz").get_json()) == DETAILS  # the test client is 127.0.0.1
    client.environ_base["REMOTE_ADDR"] = "192.0.2.1"
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer None"}):
        assert client.get("/healthz", headers=headers).get_json() == {"status": "ok"}


def test_without_a_database_the_public_gets_the_status_alone(make_app, tmp_path):
    """503 either way; only the operator reads why."""
    folder = tmp_path / "db"
    folder.mkdir()
    app = make_app(DATABASE_URL=f"sqlite:///{folder / 'x.sqlite'}", deliver=False)
    with app.app_context():
        db.engine.dispose()
    folder.rename(tmp_path / "moved")
    folder.write_text("not a directory")
    client = app.test_client()
    assert client.get("/healthz").get_json() == {"status": "error",
                                                 "error": "database unreachable"}
    client.environ_base["REMOTE_ADDR"] = "192.0.2.1"
    response = client.get("/healthz")
    assert (response.status_code, response.get_json()) == (503, {"status": "error"})
