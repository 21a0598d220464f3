"""Security headers, cookies, CSRF over HTTPS, replay, addresses, mail escaping, secrets, logs."""

from __future__ import annotations

import io
import logging
import re
import tempfile
import time
from email.utils import getaddresses
from html.parser import HTMLParser

import pytest
from sqlalchemy import func, select

from contact_site import create_app
from contact_site.config import ConfigError
from contact_site.contact.uploads import neutral_filename
from contact_site.delivery.models import OutboxMail
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.files import EXE, PDF
from support.forms import VALID, form_tokens, post_form
from support.inline_code import InlineCode
from support.outbox import deliver_everything
from support.settings import base_config

CSP_DIRECTIVES = ["default-src 'self'", "frame-ancestors 'none'", "form-action 'self'",
                  "object-src 'none'"]
HTTPS = "https://localhost"


def check_headers(response, https: bool = False) -> None:
    """The headers every answer carries, page or error."""
    headers = response.headers
    policy = [d.strip() for d in headers["Content-Security-Policy"].split(";")]
    assert all(directive in policy for directive in CSP_DIRECTIVES), policy
    assert not any("unsafe-inline" in d or "unsafe-eval" in d for d in policy)
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Frame-Options"] == "DENY"
    # Sends our own origin to us, which Flask-WTF's HTTPS referrer check needs.
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert ("Strict-Transport-Security" in headers) is https


def boom():
    raise RuntimeError("an unexpected bug")


def served_over_https(wsgi_app):
    """The app as a TLS-terminating server would run it."""
    def app(environ, start_response):
        environ["wsgi.url_scheme"] = "https"
        return wsgi_app(environ, start_response)
    return app


PAGES = {
    "contact page": (lambda c: c.get("/"), 200),
    "thanks page": (lambda c: c.get("/thanks"), 200),
    "health check": (lambda c: c.get("/healthz"), 200),
    "stylesheet": (lambda c: c.get("/static/style.css"), 200),
    "script": (lambda c: c.get("/static/contact.js"), 200),
    "sent form": (lambda c: post_form(c), 303),
    "invalid form": (lambda c: post_form(c, email="nope"), 422),
    "csrf refused": (lambda c: c.post("/", data=VALID), 400),
    "not found": (lambda c: c.get("/no-such-page"), 404),
    "method not allowed": (lambda c: c.put("/"), 405),
    "too large": (lambda c: c.post("/", data=b"x", content_type="multipart/form-data; boundary=x",
                                   environ_overrides={"CONTENT_LENGTH": str(2**31)}), 413),
    "rate limited": (lambda c: [post_form(c) for _ in range(2)][-1], 429),
    "server error": (lambda c: c.get("/boom"), 500),
}


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
@pytest.mark.parametrize(("request_page", "status"), PAGES.values(), ids=PAGES.keys())
def test_every_page_and_error_carries_the_security_headers(make_app, request_page, status,
                                                           https):
    limit = "1 per minute" if status == 429 else "off"
    app = make_app(CONTACT_RATE_LIMIT=limit, PROPAGATE_EXCEPTIONS=False)
    app.add_url_rule("/boom", view_func=boom)
    if https:
        app.wsgi_app = served_over_https(app.wsgi_app)
    client = app.test_client()
    client.environ_base["HTTP_REFERER"] = f"{HTTPS}/"  # for CSRF's check over HTTPS
    for accept in ("text/html", "application/json"):
        client.environ_base["HTTP_ACCEPT"] = accept
        with request_page(client) as response:
            assert response.status_code == status
            check_headers(response, https=https)


@pytest.mark.parametrize(("request_page", "status"),
                         [PAGES["contact page"], PAGES["invalid form"], PAGES["not found"],
                          PAGES["thanks page"]], ids=["page", "422", "404", "thanks"])
def test_pages_hold_no_inline_code_the_policy_would_block(client, request_page, status):
    response = request_page(client)
    parser = InlineCode()
    parser.feed(response.get_data(as_text=True))
    assert parser.found == []


def session_cookie(response) -> str:
    cookies = [c for c in response.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert len(cookies) == 1, response.headers.getlist("Set-Cookie")
    return cookies[0]


def test_session_cookie_is_httponly_and_lax_over_http(client):
    flags = {f.strip().lower() for f in session_cookie(client.get("/")).split(";")}
    assert {"httponly", "samesite=lax"} <= flags and "secure" not in flags


def test_session_cookie_is_secure_over_https(app):
    response = app.test_client().get("/", base_url=HTTPS)
    flags = {f.strip().lower() for f in session_cookie(response).split(";")}
    assert {"httponly", "samesite=lax", "secure"} <= flags


def test_forwarded_https_counts_only_behind_a_trusted_proxy(make_app):
    forwarded = {"X-Forwarded-Proto": "https"}
    direct = make_app().test_client().get("/", headers=forwarded)
    assert "Strict-Transport-Security" not in direct.headers
    proxied = make_app(PROXY_FIX_X_PROTO=1).test_client().get("/", headers=forwarded)
    assert "Strict-Transport-Security" in proxied.headers
    assert "secure" in session_cookie(proxied).lower()


@pytest.mark.parametrize(("referer", "status"), [
    (f"{HTTPS}/", 303),
    (f"{HTTPS}/some/page?x=1", 303),
    (None, 400),
    ("https://evil.example.com/", 403),
    ("http://localhost/", 400),
    ("https://localhost:8443/", 403),
])
def test_csrf_referrer_check_over_https(app, referer, status):
    """Flask-WTF's strict check: a same-origin Referer passes, none or plain http fails (400);
    another site is refused before it (403: this form takes nothing from there)."""
    client = app.test_client()
    tokens = form_tokens_over_https(client)
    headers = {"Accept": "text/html", **({"Referer": referer} if referer else {})}
    response = client.post("/", base_url=HTTPS, data={**VALID, **tokens}, headers=headers)
    assert response.status_code == status
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Submission)) == (
            1 if status == 303 else 0)


def form_tokens_over_https(client) -> dict[str, str]:
    page = client.get("/", base_url=HTTPS).get_data(as_text=True)
    pattern = r'name="(csrf_token|submission_key)" type="hidden" value="([^"]+)"'
    return dict(re.findall(pattern, page))


def test_replayed_form_answers_alike_and_stores_and_sends_nothing_new(app, client, smtp_server):
    tokens = form_tokens(client)
    first = post_form(client, json=True, tokens=tokens)
    again = post_form(client, json=True, tokens=tokens)
    assert first.status_code == again.status_code == 202
    assert first.get_json() == again.get_json()
    deliver_everything(app)
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(OutboxMail)) == 2
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "ada@example.com", "sales@example.com"]


def test_replayed_key_with_other_content_is_a_new_submission(app, client, smtp_server):
    """Only a true double submit folds (docs/guarantees.md); a key reused for other words stores
    them."""
    tokens = form_tokens(client)
    first = post_form(client, json=True, tokens=tokens)
    again = post_form(client, json=True, tokens=tokens, subject="Changed", email="eve@example.com")
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] != again.get_json()["id"]
    deliver_everything(app)
    assert sorted(m.rcpt_tos[0] for m in smtp_server.messages) == [
        "ada@example.com", "eve@example.com", "sales@example.com", "sales@example.com"]


def test_redirect_is_relative_whatever_the_host_header(client):
    assert post_form(client).headers["Location"] == "/thanks"


def test_idn_address_is_mailed_in_its_ascii_form(app, client, smtp_server):
    """Envelope, To and Reply-To carry the punycode domain; SMTPUTF8 is never needed."""
    assert post_form(client, email="Ada@Bücher.de").status_code == 303
    deliver_everything(app)
    mails = {m.rcpt_tos[0]: m for m in smtp_server.messages}
    assert set(mails) == {"sales@example.com", "Ada@xn--bcher-kva.de"}
    thank_you = mails["Ada@xn--bcher-kva.de"].message
    assert getaddresses(thank_you.get_all("To")) == [("", "Ada@xn--bcher-kva.de")]
    reply_to = mails["sales@example.com"].message["Reply-To"]
    assert getaddresses([reply_to])[0][1] == "Ada@xn--bcher-kva.de"
    assert all(m.data.isascii() for m in mails.values())


def test_a_local_part_in_another_script_is_accepted_as_typed(app, client):
    """Valid with SMTPUTF8: stored as typed, its domain in ASCII (mails: test_deliverability)."""
    response = post_form(client, json=True, email="üser@Bücher.de")
    assert response.status_code == 202
    with app.app_context():
        assert db.session.scalars(select(Submission.email)).one() == "üser@xn--bcher-kva.de"


LINE_BREAKS = {"CR": "\r", "LF": "\n", "CRLF": "\r\n", "folded": "\r\n ", "NUL": "\x00",
               "NEL": "\u0085", "LS": "\u2028", "PS": "\u2029", "ESC": "\x1b", "VT": "\x0b"}


@pytest.mark.parametrize("field", ["name", "email", "subject", "recipient"])
@pytest.mark.parametrize("char", LINE_BREAKS.values(), ids=LINE_BREAKS.keys())
@pytest.mark.parametrize("where", ["inside", "at the end"])
def test_single_line_fields_refuse_breaks_and_controls(app, client, field, char, where):
    value = VALID[field] + char + ("Bcc: victim@example.com" if where == "inside" else "")
    response = post_form(client, json=True, **{field: value})
    assert response.status_code == 422
    message = " ".join(response.get_json()["errors"][field])
    expected = "Choose who to write to" if field == "recipient" else "single line without"
    assert expected in message
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Submission)) == 0


class Links(HTMLParser):
    """Tags and attributes of an HTML body."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += [value or "" for _, value in attrs]


def test_html_mail_escapes_visitor_text_and_makes_no_link_of_it(app, client, smtp_server):
    hostile = {
        "name": "<img src=x onerror=alert(1)>",
        "subject": "<script>alert(1)</script>",
        "message": '<a href="javascript:alert(1)">click</a>\njavascript:alert(2)\n'
                   "<iframe src=//evil.example.com></iframe>",
    }
    assert post_form(client, **hostile).status_code == 303
    deliver_everything(app)
    owner = next(m for m in smtp_server.messages if m.rcpt_tos == ["sales@example.com"])
    html = owner.message.get_body(("html",)).get_content()
    parsed = Links()
    parsed.feed(html)
    assert not {"a", "img", "script", "iframe"} & set(parsed.tags)
    assert not any("javascript:" in value.lower() for value in parsed.attributes)
    assert "&lt;a href=" in html and "&lt;script&gt;" in html


@pytest.mark.parametrize("key", [None, "", "changeme", "change-me", "secret", "short",
                                 "your-secret-key-here", "please-change-me-now",
                                 "aaaaaaaaaaaaaaaaaaaaaaaa", "dev"])
def test_refuses_to_start_without_a_real_secret_key(tmp_path, smtp_server, monkeypatch, key):
    monkeypatch.delenv("SECRET_KEY", raising=False)
    config = {**base_config(tmp_path, smtp_server), "TESTING": False, "SECRET_KEY": key}
    with pytest.raises(ConfigError, match="SECRET_KEY"):
        create_app(config)


def test_starts_with_a_real_secret_key(make_app):
    assert make_app(TESTING=False, SECRET_KEY="p9V2-kq8Zr1xY7wLm3Nc5Bd0Hf").config["SECRET_KEY"]


def app_log(caplog) -> str:
    """What the application and its libraries logged (the test SMTP server's own log aside)."""
    return "\n".join(f"{r.name} {r.getMessage()} {r.exc_text or ''}" for r in caplog.records
                     if not r.name.startswith("mail.log"))


def test_logs_never_hold_the_password_or_the_message(make_app, smtp_server, caplog):
    """A whole submission and its delivery, logged at DEBUG: no body, no MAIL_PASSWORD."""
    password, body = "pa55-Word-7f3a9c1e", "Private words 8d1f2c: my account number is 42."
    caplog.set_level(logging.DEBUG)
    app = make_app(MAIL_PASSWORD=password)  # no MAIL_USERNAME: no login, delivery goes on
    client = app.test_client()
    assert post_form(client, message=body, subject="Subject 5e6b7a").status_code == 303
    smtp_server.wait_for(2)
    deliver_everything(app)
    logged = app_log(caplog)
    assert "contact_site.delivery" in logged, "delivery logged nothing: the check proves nothing"
    assert password not in logged and body not in logged and "Subject 5e6b7a" not in logged


def test_failed_login_logs_no_password(make_app, smtp_server, caplog):
    """The test server offers no AUTH: the login fails, is logged and retried, without secrets."""
    password = "pa55-Word-0b9e4d2a"
    caplog.set_level(logging.DEBUG)
    app = make_app(MAIL_USERNAME="site", MAIL_PASSWORD=password)
    assert post_form(app.test_client()).status_code == 303
    deadline = time.monotonic() + 10
    with app.app_context():
        while not db.session.scalar(select(func.count()).select_from(OutboxMail).where(
                OutboxMail.last_error.is_not(None))):
            assert time.monotonic() < deadline, "the failed login was never recorded"
            time.sleep(0.05)
            db.session.rollback()
        errors = db.session.scalars(select(OutboxMail.last_error)).all()
    # The attempt's line is logged just after its outcome is committed: wait for it too.
    while "contact_site.delivery" not in app_log(caplog) and time.monotonic() < deadline:
        time.sleep(0.05)
    logged = app_log(caplog)
    assert "contact_site.delivery" in logged, "delivery logged nothing: the check proves nothing"
    assert password not in logged and not any(password in (e or "") for e in errors)


NAMES = [
    ("../../etc/passwd.pdf", "passwd.pdf"),
    ("C:\\Users\\eve\\evil.pdf", "evil.pdf"),
    ("evil.exe\x00.pdf", "evil.exe.pdf"),
    ("invoice\u202egpj.exe", "invoicegpj.exe"),
    ("a\r\nContent-Type: text-html.pdf", "aContent-Type_ text-html.pdf"),
    ("a\r\nContent-Type: text/html.pdf", "html.pdf"),
    ('what<>:"|?*.pdf', "what_______.pdf"),
    ("  ..hidden.pdf. ", "hidden.pdf"),
    ("Résumé – 2026.pdf", "Résumé – 2026.pdf"),
    ("a" * 300 + ".pdf", "a" * 116 + ".pdf"),
]


@pytest.mark.parametrize(("raw", "safe"), NAMES)
def test_upload_names_are_neutralised(raw, safe):
    assert neutral_filename(raw) == safe


@pytest.mark.parametrize(("content", "status"), [
    (EXE + b"\0" * 700_000, 422),  # spooled to a temporary file, then refused by its bytes
    (PDF + b"\0" * (2**20), 413),  # over the 1 MB file limit
])
def test_refused_upload_leaves_no_temporary_or_stored_file(make_app, tmp_path, monkeypatch,
                                                           content, status):
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    app = make_app(CONTACT_MAX_UPLOAD_MB=1)
    client = app.test_client()
    response = post_form(client, attachment=(io.BytesIO(content), "evil.pdf"))
    assert response.status_code == status
    assert list(spool.iterdir()) == []
    uploads = tmp_path / "uploads"
    assert not uploads.exists() or not any(uploads.rglob("*"))


@pytest.mark.parametrize("encoding", ["multipart/form-data", "application/x-www-form-urlencoded"])
def test_longest_message_fits_the_form_limits_in_either_encoding(app, client, encoding):
    """10,000 three-byte characters with CRLF line ends, percent-encoded or not: no 413."""
    message = ("語" * 99 + "\r\n") * 100
    response = client.post("/", data={**VALID, **form_tokens(client), "message": message},
                           content_type=encoding, headers={"Accept": "application/json"})
    assert response.status_code == 202
