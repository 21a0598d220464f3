"""The dev mailbox exists under `flask run --debug` alone: never under gunicorn, whatever is set."""

from __future__ import annotations

import http.client
import socket
import subprocess
from urllib.parse import urlencode

import pytest
from conftest import VALID
from delivery_helpers import (
    FLASK,
    PROJECT_ROOT,
    form_page,
    free_port,
    start_gunicorn,
    stop_process,
    wait_until,
    worker_env,
)

from contact_site import devmail
from contact_site.runtime import start_process

# Spam checks of their own would make a scripted, instant POST spam (§12): off here.
NO_SPAM_CHECKS = {"CONTACT_MIN_FILL_SECONDS": 0, "CONTACT_PROOF_OF_WORK": "off"}
DEVELOPMENT_ASKED = {"FLASK_DEBUG": "1", "DEV_MAILBOX": "true"}


def status_of(port: int, path: str) -> int:
    """The status of GET `path` from a loopback client."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def post_over_http(port: int) -> int:
    """Fetch the form and send it, as a browser without JavaScript would; the status."""
    cookie, tokens = form_page(port)
    body = urlencode({**VALID, **tokens})
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/", body=body, headers={
            "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded",
            "Accept": "text/html"})
        return connection.getresponse().status
    finally:
        connection.close()


def listening(port: int) -> bool:
    """Whether anything accepts connections on 127.0.0.1:`port`."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture
def app(make_app):
    """The test's view of the database; the servers under test deliver, not this app."""
    return make_app(deliver=False)


@pytest.mark.timeout(90)
def test_under_gunicorn_flask_debug_and_dev_mailbox_are_ignored(app, tmp_path, smtp_server):
    """FLASK_DEBUG=1 and DEV_MAILBOX=true: no mailbox, mail reaches the real server, a warning."""
    sink_port = free_port()
    process, log, port = start_gunicorn(app, tmp_path, **DEVELOPMENT_ASKED, **NO_SPAM_CHECKS,
                                        DEV_MAILBOX_PORT=sink_port)
    try:
        assert status_of(port, "/dev/mailbox") == 404
        assert post_over_http(port) == 303
        received = smtp_server.wait_for(2, timeout=30)
        assert sorted(mail.rcpt_tos[0] for mail in received) == [
            "ada@example.com", "sales@example.com"]
        assert not listening(sink_port), "no SMTP sink was started"
        assert status_of(port, "/dev/mailbox") == 404
    finally:
        stop_process(process, timeout=30)
    output = log.read_text()
    assert "FLASK_DEBUG and DEV_MAILBOX ignored" in output
    assert "Traceback" not in output


def test_any_server_but_flask_run_leaves_debug_and_the_mailbox_off(make_app, caplog):
    """gunicorn, wsgi.py, `outbox work`, Celery: start_process outside the dev server."""
    app = make_app(deliver=False, DEV_MAILBOX=True)
    app.debug = True  # as FLASK_DEBUG=1 makes it
    start_process(app)
    assert not app.debug and not app.config["DEV_MAILBOX"]
    assert app.test_client().get("/dev/mailbox").status_code == 404
    assert "FLASK_DEBUG and DEV_MAILBOX ignored" in caplog.text


def test_the_dev_mailbox_never_overrides_an_explicit_mail_server(make_app, smtp_server):
    app = make_app(deliver=False, DEV_MAILBOX=True, DEV_MAILBOX_PORT=free_port())
    try:
        devmail.start(app)
        assert (app.config["MAIL_SERVER"], app.config["MAIL_PORT"]) == (
            "127.0.0.1", smtp_server.port)
    finally:
        devmail.stop_sinks()


@pytest.mark.parametrize(("address", "shown"), [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("::ffff:127.0.0.1", True),
    ("192.0.2.1", False), ("::ffff:192.0.2.1", False), ("2001:db8::1", False),
])
def test_the_mailbox_is_served_to_loopback_clients_only(make_app, tmp_path, address, shown):
    port = free_port()
    app = make_app(deliver=False, DEV_MAILBOX=True, DEV_MAILBOX_PORT=port, MAIL_PORT=port,
                   DEV_MAILBOX_FOLDER=str(tmp_path / "devmail"))
    try:
        devmail.start(app)
        client = app.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        assert client.get("/dev/mailbox").status_code == (200 if shown else 404)
    finally:
        devmail.stop_sinks()


@pytest.mark.timeout(90)
def test_flask_run_debug_serves_the_mailbox_and_keeps_an_explicit_mail_server(
        app, tmp_path, smtp_server):
    """The one place the mailbox lives; even there a MAIL_SERVER the operator named is used."""
    port, sink_port = free_port(), free_port()
    env = worker_env(app, **NO_SPAM_CHECKS, DEV_MAILBOX_PORT=sink_port)
    log = tmp_path / "flask-run.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [FLASK, "--app", "contact_site", "run", "--debug", "--no-reload", "--no-debugger",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: listening(port) or process.poll() is not None, 30, "flask run")
        assert process.poll() is None, log.read_text()
        assert status_of(port, "/dev/mailbox") == 200  # the first request starts the sink
        assert listening(sink_port)
        assert post_over_http(port) == 303
        smtp_server.wait_for(2, timeout=30)  # the operator's server, not the sink
    finally:
        stop_process(process)
    assert "ignored" not in log.read_text()

