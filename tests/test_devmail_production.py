"""The dev mailbox exists under `flask run --debug` alone: never under gunicorn, whatever is set."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
from pathlib import Path
from urllib.parse import urlencode

import pytest

from contact_site import devmail
from contact_site.runtime import start_process
from support.forms import VALID, form_page
from support.processes import (
    FLASK,
    PROJECT_ROOT,
    free_port,
    start_gunicorn,
    stop_process,
    worker_env,
)
from support.waiting import wait_until

# The test's view of the database; the servers under test deliver, not this app.
pytestmark = pytest.mark.manual_delivery

# Spam checks of their own would make a scripted, instant POST spam (§12): off here.
NO_SPAM_CHECKS = {"CONTACT_MIN_FILL_SECONDS": 0, "CONTACT_PROOF_OF_WORK": "off"}
DEVELOPMENT_ASKED = {"FLASK_DEBUG": "1", "DEV_MAILBOX": "true"}


def answer_to(port: int, path: str, headers: dict[str, str] | None = None,
              ) -> http.client.HTTPResponse:
    """The answer to GET `path` from a loopback client, its body read."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return response
    finally:
        connection.close()


def status_of(port: int, path: str, headers: dict[str, str] | None = None) -> int:
    """The status of GET `path` from a loopback client."""
    return answer_to(port, path, headers).status


def flask_run(env: dict[str, str], log: Path, *options: str) -> tuple[subprocess.Popen[bytes], int]:
    """`flask run` on a free port, in a process group of its own (a reloader would fork)."""
    port = free_port()
    with log.open("ab") as out:
        process = subprocess.Popen(
            [FLASK, "--app", "contact_site", "run", *options, "--host", "127.0.0.1",
             "--port", str(port)],
            cwd=PROJECT_ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)
    return process, port


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop the process group we started for `flask run` (its reloader's child included)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (a reloader runs the server in a child)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1]
                                            .split()[1]) == pid:
                found.append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


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
    sink_port = free_port()
    env = worker_env(app, **NO_SPAM_CHECKS, DEV_MAILBOX_PORT=sink_port)
    log = tmp_path / "flask-run.log"
    process, port = flask_run(env, log, "--debug", "--no-reload", "--no-debugger")
    try:
        wait_until(lambda: listening(port) or process.poll() is not None, 30, "flask run")
        assert process.poll() is None, log.read_text()
        assert status_of(port, "/dev/mailbox") == 200  # the first request starts the sink
        assert listening(sink_port)
        assert post_over_http(port) == 303
        smtp_server.wait_for(2, timeout=30)  # the operator's server, not the sink
    finally:
        stop_group(process)
    assert "ignored" not in log.read_text()


FORWARDED_AS_LOOPBACK = {"X-Forwarded-For": "127.0.0.1", "Forwarded": "for=127.0.0.1",
                         "X-Real-IP": "127.0.0.1"}


@pytest.mark.timeout(90)
@pytest.mark.parametrize("proxies", [0, 1], ids=["proxy-not-declared", "proxy-fix"])
def test_behind_a_proxy_on_the_same_host_the_mailbox_is_refused(app, tmp_path, proxies):
    """Every visitor of a local proxy arrives from 127.0.0.1: a forwarded request is not a
    local user, whether ProxyFix trusts the proxy or not, whatever address the header names."""
    env = worker_env(app, DEV_MAILBOX_PORT=free_port(), PROXY_FIX_X_FOR=proxies)
    process, port = flask_run(env, tmp_path / "flask-run.log", "--debug", "--no-reload")
    try:
        wait_until(lambda: listening(port) or process.poll() is not None, 30, "flask run")
        assert status_of(port, "/dev/mailbox") == 200
        refused = {name: status_of(port, "/dev/mailbox", {name: value})
                   for name, value in FORWARDED_AS_LOOPBACK.items()}
        assert refused == dict.fromkeys(FORWARDED_AS_LOOPBACK, 404)
        assert status_of(port, "/dev/mailbox", {"X-Forwarded-For": "203.0.113.7"}) == 404
    finally:
        stop_group(process)


@pytest.mark.timeout(90)
def test_flask_run_without_debug_flag_ignores_flask_debug(app, tmp_path, smtp_server):
    """FLASK_DEBUG=1 and DEV_MAILBOX=true in the environment, no `--debug` typed: no
    debugger, no reloader, no sink, /dev/mailbox 404, mail to MAIL_SERVER, a warning."""
    sink_port = free_port()
    env = worker_env(app, **DEVELOPMENT_ASKED, **NO_SPAM_CHECKS, DEV_MAILBOX_PORT=sink_port)
    log = tmp_path / "flask-run.log"
    process, port = flask_run(env, log)
    try:
        wait_until(lambda: listening(port) or process.poll() is not None, 30, "flask run")
        assert process.poll() is None, log.read_text()
        assert children(process.pid) == [], "no reloader: the server runs in this process"
        # Werkzeug's debugger serves its own script for this query on any page.
        probe = answer_to(port, "/?__debugger__=yes&cmd=resource&f=debugger.js")
        assert not probe.getheader("Content-Type", "").startswith("text/javascript")
        assert status_of(port, "/dev/mailbox") == 404
        assert post_over_http(port) == 303
        received = smtp_server.wait_for(2, timeout=30)
        assert sorted(mail.rcpt_tos[0] for mail in received) == [
            "ada@example.com", "sales@example.com"]
        assert not listening(sink_port), "no SMTP sink was started"
    finally:
        stop_group(process)
    output = log.read_text()
    assert "Debug mode: off" in output
    assert "FLASK_DEBUG and DEV_MAILBOX ignored" in output


@pytest.mark.timeout(60)
def test_flask_run_refuses_a_debugger_asked_by_the_environment(app, tmp_path):
    """FLASK_RUN_DEBUGGER=1 without `--debug`: `flask run` stops with one line naming it."""
    env = worker_env(app, FLASK_RUN_DEBUGGER="1")
    log = tmp_path / "flask-run.log"
    process, _port = flask_run(env, log)
    try:
        assert process.wait(30) != 0
    finally:
        stop_group(process)
    assert "configuration error: FLASK_RUN_DEBUGGER is set" in log.read_text()

