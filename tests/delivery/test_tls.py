"""Verified TLS, guarded logins and SMTP configuration errors, against real TLS servers."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import update

from contact_site.config import ConfigError
from contact_site.database import utcnow
from contact_site.delivery import outbox
from contact_site.delivery.models import OutboxMail
from contact_site.delivery.smtp import is_loopback_host
from contact_site.escaping import escape_controls
from contact_site.extensions import db
from support.factories import queue_submissions
from support.outbox import deliver_now, row
from support.processes import FLASK, PROJECT_ROOT, worker_env
from support.smtp_server import Login, SMTPTestServer
from support.tls_certs import LocalPKI

# A test using database_url or app runs on SQLite, then on PostgreSQL.
pytestmark = pytest.mark.each_database

USER, PASSWORD = "site@example.org", "pa55-Word-c0ffee-9a1b"
CREDENTIALS = {"MAIL_USERNAME": USER, "MAIL_PASSWORD": PASSWORD}
HOSTILE = "\r\x1b[2J\x1b]0;pwned\x07 all good \u202eenod"
HOSTILE_SHOWN = "\\r\\x1b[2J\\x1b]0;pwned\\x07 all good \\u202eenod"


@pytest.fixture
def pki(tmp_path: Path) -> LocalPKI:
    """A test CA; servers get certificates from it for 127.0.0.1, or self-signed ones."""
    return LocalPKI.create(tmp_path / "pki")


def tls_app(make_app: Callable[..., Flask], server: SMTPTestServer, **settings: Any) -> Flask:
    """An app without a delivery thread, sending to `server` with `settings`."""
    return make_app(deliver=False, MAIL_PORT=server.port, **settings)


def status_output(app: Flask) -> str:
    """What `flask outbox status` prints."""
    result = app.test_cli_runner().invoke(args=["outbox", "status"])
    assert result.exit_code == 0, result.output
    return str(result.output)


def healthz_smtp(app: Flask) -> dict[str, Any]:
    """The "smtp" part of GET /healthz."""
    response = app.test_client().get("/healthz")
    assert response.status_code == 200
    return dict(response.get_json()["smtp"])


def attempts(app: Flask, mail_id: int) -> list[tuple[str, str | None]]:
    """The (outcome, reply) of every attempt at one mail."""
    with app.app_context():
        return [(a.outcome, a.reply) for a in outbox.attempts_of(mail_id)]


def assert_held(app: Flask, server: SMTPTestServer, mail_id: int, reason: str) -> None:
    """No credentials and no mail reached the server; the mail waits, uncounted; error shown."""
    assert server.auth_commands == [] and server.logins == []
    assert server.messages == [] and server.data_commands == 0
    mail = row(app, mail_id)
    assert (mail.status, mail.attempts) == ("queued", 0)
    assert attempts(app, mail_id)[-1][0] == "config_error"
    assert reason in status_output(app)
    assert reason in healthz_smtp(app)["error"]


# -- certificates that must not be trusted ---------------------------------------------

UNTRUSTED = {
    "self-signed for another name, STARTTLS": (
        lambda pki: pki.self_signed("mail.example.net"), False, False, "self-signed"),
    "self-signed for another name, implicit TLS": (
        lambda pki: pki.self_signed("mail.example.net"), True, False, "self-signed"),
    "issued by a CA nobody trusts": (
        lambda pki: pki.issued("127.0.0.1"), False, False, "unable to get local issuer"),
    "trusted CA, certificate for another host name": (
        lambda pki: pki.issued("mail.example.com"), False, True, "IP address mismatch"),
}


@pytest.mark.parametrize("make_context, implicit, trust_ca, why", UNTRUSTED.values(),
                         ids=UNTRUSTED.keys())
def test_an_unverified_certificate_gets_no_credentials_and_no_mail(
        make_app, start_smtp, pki, caplog, make_context, implicit, trust_ca, why):
    """Verification fails: no AUTH, nothing delivered, the mail stays queued, error shown."""
    server = start_smtp(ssl_context=make_context(pki), implicit_tls=implicit, auth=True)
    tls = {"MAIL_USE_SSL": True} if implicit else {"MAIL_USE_TLS": True}
    ca = {"MAIL_TLS_CA_FILE": str(pki.ca_file)} if trust_ca else {}
    app = tls_app(make_app, server, **tls, **ca, **CREDENTIALS)
    (mail_id,) = queue_submissions(app)
    caplog.set_level(logging.INFO, logger="contact_site")
    deliver_now(app)
    assert_held(app, server, mail_id, "TLS certificate of 127.0.0.1")
    errors = [r.getMessage() for r in caplog.records
              if r.levelno == logging.ERROR and r.name.startswith("contact_site")]
    assert len(errors) == 1 and why in errors[0] and "\n" not in errors[0]
    assert PASSWORD not in caplog.text and USER not in caplog.text


# -- trusted certificates ------------------------------------------------------------


@pytest.mark.parametrize("implicit", [False, True], ids=["STARTTLS", "implicit TLS"])
def test_a_server_trusted_through_mail_tls_ca_file_gets_the_login_over_tls(
        make_app, start_smtp, pki, implicit):
    """MAIL_TLS_CA_FILE names the test CA: verified, AUTH over TLS, delivered, no error."""
    server = start_smtp(ssl_context=pki.issued("127.0.0.1"), implicit_tls=implicit, auth=True)
    tls = {"MAIL_USE_SSL": True} if implicit else {"MAIL_USE_TLS": True}
    app = tls_app(make_app, server, MAIL_TLS_CA_FILE=str(pki.ca_file), **tls, **CREDENTIALS)
    (mail_id,) = queue_submissions(app)
    deliver_now(app)
    assert server.logins == [Login("PLAIN", USER, PASSWORD, tls=True)]
    assert row(app, mail_id).status == "sent" and len(server.messages) == 1
    assert healthz_smtp(app) == {"error": None, "since": None}


def test_a_server_trusted_through_ssl_cert_file_gets_the_login_over_tls(make_app, start_smtp, pki):
    """OpenSSL's SSL_CERT_FILE in a worker's environment is trusted (system store)."""
    server = start_smtp(ssl_context=pki.issued("127.0.0.1"), auth=True)
    app = tls_app(make_app, server)
    (mail_id,) = queue_submissions(app)
    env = worker_env(app, MAIL_PORT=server.port, MAIL_USE_TLS="true", SSL_CERT_FILE=pki.ca_file,
                     **CREDENTIALS)
    env.pop("SSL_CERT_DIR", None)
    result = subprocess.run([FLASK, "--app", "contact_site", "outbox", "work", "--once"],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert server.logins == [Login("PLAIN", USER, PASSWORD, tls=True)]
    assert row(app, mail_id).status == "sent" and len(server.messages) == 1


def test_without_ssl_cert_file_the_same_server_is_not_trusted(make_app, start_smtp, pki):
    """The control for the test above: the worker alone does not trust the test CA."""
    server = start_smtp(ssl_context=pki.issued("127.0.0.1"), auth=True)
    app = tls_app(make_app, server)
    (mail_id,) = queue_submissions(app)
    env = worker_env(app, MAIL_PORT=server.port, MAIL_USE_TLS="true", **CREDENTIALS)
    result = subprocess.run([FLASK, "--app", "contact_site", "outbox", "work", "--once"],
                            cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "smtp configuration error: TLS certificate of 127.0.0.1" in result.stderr
    assert server.logins == [] and row(app, mail_id).status == "queued"


# -- configuration errors ------------------------------------------------------------


def test_no_starttls_offered_is_a_configuration_error(make_app, start_smtp, database_url):
    """MAIL_USE_TLS, a server without STARTTLS (that would take AUTH in clear): nothing sent."""
    server = start_smtp(auth=True, auth_cleartext=True)
    app = tls_app(make_app, server, MAIL_USE_TLS=True, DATABASE_URL=database_url, **CREDENTIALS)
    (mail_id,) = queue_submissions(app)
    deliver_now(app)
    assert_held(app, server, mail_id, "the server does not offer STARTTLS")
    assert healthz_smtp(app)["since"].endswith("Z")


def test_no_auth_offered_is_a_configuration_error(make_app, start_smtp):
    """MAIL_USERNAME set, a loopback server without AUTH: the mail waits, error shown."""
    server = start_smtp()
    app = tls_app(make_app, server, **CREDENTIALS)
    (mail_id,) = queue_submissions(app)
    deliver_now(app)
    assert_held(app, server, mail_id, "the server does not offer AUTH")


def test_a_refused_login_is_a_configuration_error_and_the_mail_does_not_expire(
        make_app, start_smtp, pki):
    """535 to AUTH: shown, the mail neither failed nor expired, its give-up time moved on."""
    server = start_smtp(ssl_context=pki.issued("127.0.0.1"), auth=True)
    server.refuse_logins = True
    app = tls_app(make_app, server, MAIL_USE_TLS=True, MAIL_TLS_CA_FILE=str(pki.ca_file),
                  **CREDENTIALS)
    (mail_id,) = queue_submissions(app)
    soon = utcnow() + timedelta(milliseconds=500)  # would expire at the next retry
    with app.app_context():
        db.session.execute(update(OutboxMail).values(expires_at=soon))
        db.session.commit()
    deliver_now(app)
    assert {login.tls for login in server.logins} == {True} and server.messages == []
    mail = row(app, mail_id)
    assert (mail.status, mail.attempts) == ("queued", 0) and mail.expires_at > soon
    assert "login refused: 535 5.7.8 Authentication credentials invalid" in status_output(app)
    assert healthz_smtp(app)["error"].startswith("login refused: 535")


def test_credentials_without_tls_to_a_non_loopback_server_are_never_sent(make_app, caplog):
    """Checked before connecting: the name is not even looked up; the mail waits."""
    app = make_app(deliver=False, MAIL_SERVER="smtp.example.invalid", **CREDENTIALS)
    (mail_id,) = queue_submissions(app)
    deliver_now(app)
    mail = row(app, mail_id)
    assert (mail.status, mail.attempts) == ("queued", 0)
    assert "the password would travel in clear text" in status_output(app)
    assert PASSWORD not in caplog.text


def test_a_loopback_server_without_tls_gets_the_login(make_app, start_smtp):
    """127.0.0.1 without TLS is allowed to receive the login, and the mail is delivered."""
    server = start_smtp(auth=True, auth_cleartext=True)
    app = tls_app(make_app, server, **CREDENTIALS)
    (mail_id,) = queue_submissions(app)
    deliver_now(app)
    assert server.logins == [Login("PLAIN", USER, PASSWORD, tls=False)]
    assert row(app, mail_id).status == "sent"


def test_the_error_clears_once_a_connection_works_and_held_mails_go(
        make_app, start_smtp, pki, database_url):
    """Fixed login, `outbox retry --held`: the held mails are sent and the error is gone."""
    server = start_smtp(ssl_context=pki.issued("127.0.0.1"), auth=True)
    server.refuse_logins = True
    app = tls_app(make_app, server, MAIL_USE_TLS=True, MAIL_TLS_CA_FILE=str(pki.ca_file),
                  DATABASE_URL=database_url,
                  DELIVERY_RETRY_BASE_SECONDS=600, DELIVERY_RETRY_MAX_SECONDS=600,
                  **CREDENTIALS)
    ids = queue_submissions(app, count=2)
    deliver_now(app)
    assert deliver_now(app) == 0, "held mails were tried again before their time"
    server.refuse_logins = False
    result = app.test_cli_runner().invoke(args=["outbox", "retry", "--held"])
    assert result.output.strip() == "released 2 held mail(s)"
    deliver_now(app)
    assert [row(app, i).status for i in ids] == ["sent", "sent"]
    assert healthz_smtp(app) == {"error": None, "since": None}
    assert "configuration error" not in status_output(app)


# -- what the operator is shown ------------------------------------------------------


def test_a_hostile_reply_is_shown_escaped_by_outbox_status(make_app, smtp_server):
    """A 5xx whose text holds CR, ANSI codes and a bidi override cannot rewrite the screen."""
    smtp_server.mode, smtp_server.reply = "reply", f"550 5.7.1 {HOSTILE}"
    app = make_app(deliver=False)
    queue_submissions(app)
    deliver_now(app)
    shown = status_output(app)
    assert f"550 5.7.1 {HOSTILE_SHOWN}" in shown
    assert not any(c in shown for c in "\r\x1b\x07\u202e")


def test_a_hostile_login_refusal_is_shown_escaped_in_healthz_and_status(make_app, start_smtp, pki):
    """The configuration error carries the server's words: escaped in both places."""
    server = start_smtp(ssl_context=pki.issued("127.0.0.1"), auth=True)
    server.refuse_logins, server.login_refusal = True, f"535 5.7.8 {HOSTILE}"
    app = tls_app(make_app, server, MAIL_USE_TLS=True, MAIL_TLS_CA_FILE=str(pki.ca_file),
                  **CREDENTIALS)
    queue_submissions(app)
    deliver_now(app)
    assert healthz_smtp(app)["error"] == f"login refused: 535 5.7.8 {HOSTILE_SHOWN}"
    shown = status_output(app)
    assert f"535 5.7.8 {HOSTILE_SHOWN}" in shown
    assert not any(c in shown for c in "\r\x1b\x07\u202e")


ESCAPES = [
    ("line\r\nbreak", "line\\r\\nbreak"),
    ("tab\there", "tab\\there"),
    ("\x1b[2Jclear", "\\x1b[2Jclear"),
    ("nul\x00del\x7f", "nul\\x00del\\x7f"),
    ("c1 csi\x9b2J", "c1 csi\\x9b2J"),
    ("bidi \u202eexe.pdf \u2066x\u2069 \u200f", "bidi \\u202eexe.pdf \\u2066x\\u2069 \\u200f"),
    ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
    ("tag\U000e0041", "tag\\U000e0041"),
    ("sep\u2028arator", "sep\\u2028arator"),
    ("250 OK 已收到 تم الاستلام", "250 OK 已收到 تم الاستلام"),
    ("", ""),
]


@pytest.mark.parametrize("raw, shown", ESCAPES)
def test_escape_controls(raw, shown):
    """Control, format and separator characters become escapes; ordinary text stays."""
    assert escape_controls(raw) == shown


LOOPBACK = [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST.", True), ("::ffff:127.0.0.1", True),
    ("128.0.0.1", False), ("10.0.0.1", False), ("::2", False), ("0.0.0.0", False),
    ("localhost.example.com", False), ("mail.localhost", False), ("smtp.gmail.com", False),
]


@pytest.mark.parametrize("host, loopback", LOOPBACK)
def test_only_loopback_names_and_addresses_may_receive_a_login_without_tls(host, loopback):
    """The allowlist: 127.0.0.0/8, ::1 and `localhost`; no DNS look-up."""
    assert is_loopback_host(host) is loopback


def test_mail_tls_ca_file_must_be_a_readable_pem_bundle(make_app, tmp_path):
    """A missing or malformed CA file stops start-up with one line naming the variable."""
    with pytest.raises(ConfigError, match="MAIL_TLS_CA_FILE must name a readable file"):
        make_app(deliver=False, MAIL_TLS_CA_FILE=str(tmp_path / "missing.pem"))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="MAIL_TLS_CA_FILE must hold PEM CA certificates"):
        make_app(deliver=False, MAIL_TLS_CA_FILE=str(garbage))
