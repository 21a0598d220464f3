"""The development mailbox: an SMTP sink and a page, only in development mode."""

from __future__ import annotations

import io
import re
import smtplib
import time
from pathlib import Path

import pytest

from contact_site import devmail
from support.forms import PDF_BYTES_FOR_TESTS, post_form
from support.processes import free_port


@pytest.fixture
def dev_app(make_app, tmp_path):
    """An app in development mode whose mailbox sink listens on a free port."""
    port = free_port()
    app = make_app(DEV_MAILBOX=True, DEV_MAILBOX_PORT=port, MAIL_PORT=port,
                   DEV_MAILBOX_FOLDER=str(tmp_path / "devmail"))
    devmail.start(app)  # what `flask run --debug` does at its first request
    yield app
    devmail.stop_sinks()


def test_mailbox_does_not_exist_outside_development(client):
    assert client.get("/dev/mailbox").status_code == 404
    assert client.get("/dev/mailbox/20260101T000000-" + "0" * 32).status_code == 404


def test_submission_lands_in_the_dev_mailbox(dev_app):
    client = dev_app.test_client()
    folder = Path(dev_app.config["DEV_MAILBOX_FOLDER"])
    response = post_form(client, attachment=(io.BytesIO(PDF_BYTES_FOR_TESTS), "plan.pdf"))
    assert response.status_code == 303
    deadline = time.monotonic() + 10
    while len(list(folder.glob("*.eml"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    page = client.get("/dev/mailbox").get_data(as_text=True)
    assert "[Contact] Engines" in page and "Thank you for your message" in page
    links = re.findall(r'href="(/dev/mailbox/[0-9T]+-[0-9a-f]{32})"', page)
    assert len(set(links)) == 2
    views = {link: client.get(link).get_data(as_text=True) for link in set(links)}
    [owner_link] = [link for link, view in views.items() if "plan.pdf" in view]
    assert "analytical engine" in views[owner_link]
    assert client.get(f"{owner_link}/attachments/0").data == PDF_BYTES_FOR_TESTS
    html = client.get(f"{owner_link}/html")
    assert html.status_code == 200 and "analytical engine" in html.get_data(as_text=True)


def test_sink_keeps_the_exact_bytes(dev_app):
    port = dev_app.config["DEV_MAILBOX_PORT"]
    raw = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: raw\r\n\r\nbody\r\n"
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.sendmail("a@example.com", ["b@example.com"], raw)
    [saved] = (Path(dev_app.config["DEV_MAILBOX_FOLDER"])).glob("*.eml")
    assert saved.read_bytes() == raw


def test_unknown_or_malformed_mail_ids_are_404(dev_app):
    client = dev_app.test_client()
    assert client.get("/dev/mailbox/..%2F..%2Fetc%2Fpasswd").status_code == 404
    assert client.get("/dev/mailbox/20260101T000000-" + "0" * 32).status_code == 404


@pytest.mark.parametrize(("peer", "headers", "shown"), [
    ("127.0.0.1", {}, True),
    ("::1", {}, True),
    ("127.0.0.1", {"X-Forwarded-For": "127.0.0.1"}, False),
    ("127.0.0.1", {"X-Forwarded-For": ""}, False),
    ("127.0.0.1", {"Forwarded": "for=127.0.0.1"}, False),
    ("127.0.0.1", {"X-Real-IP": "127.0.0.1"}, False),
    ("192.0.2.1", {"X-Forwarded-For": "127.0.0.1"}, False),
], ids=["loopback", "loopback-v6", "forwarded-for", "empty-forwarded-for", "forwarded",
        "real-ip", "remote-claims-loopback"])
def test_the_mailbox_trusts_only_a_direct_loopback_peer(make_app, tmp_path, peer, headers, shown):
    """The connection's own address decides, before ProxyFix rewrites it; a proxied request
    never counts as local."""
    port = free_port()
    app = make_app(deliver=False, DEV_MAILBOX=True, DEV_MAILBOX_PORT=port, MAIL_PORT=port,
                   DEV_MAILBOX_FOLDER=str(tmp_path / "devmail"), PROXY_FIX_X_FOR=1)
    try:
        devmail.start(app)
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = peer
        assert client.get("/dev/mailbox", headers=headers).status_code == (200 if shown else 404)
    finally:
        devmail.stop_sinks()
