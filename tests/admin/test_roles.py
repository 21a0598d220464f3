"""Roles: an owner does everything; a responder sees, answers, notes and files only the
messages for its recipients (404 elsewhere, in lists, searches, counts and files too) and
none of the owner's pages (403)."""

from __future__ import annotations

import pytest
from flask import Flask
from flask.testing import FlaskClient

from contact_site.admin import auth
from contact_site.admin.audit import AuditEntry
from contact_site.config import Recipient
from contact_site.delivery.models import MailKind, OutboxMail
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.admin import PASSWORD, create_owner, csrf_token, sign_in
from support.factories import create_submission

pytestmark = pytest.mark.manual_delivery

SUPPORT = Recipient("support-team", "Support Team", "support@example.com")
RESPONDER = "rita"


def make_account(app: Flask, name: str, role: str, recipients: str = "") -> None:
    """An account as `users create NAME --role ROLE --recipients …` makes it."""
    result = app.test_cli_runner().invoke(
        args=["users", "create", name, "--role", role, "--recipients", recipients,
              "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output


def signed_in(app: Flask, name: str) -> FlaskClient:
    """A client signed in as this account."""
    client = app.test_client()
    assert sign_in(client, name).status_code == 303
    return client


def two_messages(app: Flask) -> tuple[str, str]:
    """One message for Sales (with a file) and one for the Support Team; their ids."""
    sales = create_submission(app, subject="For sales", attachment=b"%PDF-1.4 sales")
    support = create_submission(app, subject="For support", recipient_slug=SUPPORT.slug,
                                recipient_name=SUPPORT.name, recipient_address=SUPPORT.address,
                                attachment=b"%PDF-1.4 support")
    return sales, support


def file_id(app: Flask, submission_id: str) -> int:
    """The id of the submission's one file."""
    with app.app_context():
        submission = db.session.get(Submission, submission_id)
        assert submission is not None
        return submission.files[0].id


def webhook_or_mail_id(app: Flask, submission_id: str) -> int:
    """The id of one of the submission's outbox rows."""
    with app.app_context():
        return int(db.session.scalar(db.select(OutboxMail.id).where(
            OutboxMail.submission_id == submission_id, OutboxMail.kind == MailKind.OWNER)))


# Every console route a signed-in account may call, with what a responder gets for a
# message of its own recipient ("own"), of another ("other"), or without one (None).
ROUTES = [
    ("GET", "/admin/submissions/{id}", 200, 404),
    ("GET", "/admin/submissions/{id}/files/{file}", 200, 404),
    ("GET", "/admin/submissions/{id}/files/{file}/infected", 403, 403),
    ("POST", "/admin/submissions/{id}/files/{file}/infected", 403, 403),
    ("POST", "/admin/submissions/{id}/state", 303, 404),
    ("POST", "/admin/submissions/{id}/reply", 303, 404),
    ("POST", "/admin/submissions/{id}/notes", 303, 404),
    ("POST", "/admin/submissions/{id}/resend", 403, 403),
    ("POST", "/admin/submissions/{id}/webhooks/{delivery}/send-again", 403, 403),
    ("POST", "/admin/submissions/{id}/spam", 403, 403),
    ("POST", "/admin/submissions/{id}/not-spam", 403, 403),
    ("POST", "/admin/submissions/{id}/delete", 403, 403),
    ("GET", "/admin/outbox", 403, None),
    ("POST", "/admin/outbox/retry", 403, None),
    ("GET", "/admin/export.csv", 403, None),
    ("GET", "/admin/export.json", 403, None),
    ("GET", "/admin/erase", 403, None),
    ("POST", "/admin/erase", 403, None),
    ("GET", "/admin/audit", 403, None),
]


@pytest.mark.parametrize(("method", "path", "own", "other"), ROUTES)
def test_a_responder_reaches_its_messages_only_and_no_owner_page(
        app: Flask, method: str, path: str, own: int, other: int | None) -> None:
    """Each console route, for a responder for Sales: its own message as an owner would,
    another recipient's as if it did not exist (404), an owner's page refused (403), and
    nothing changed by a refused request."""
    create_owner(app)
    make_account(app, RESPONDER, "responder", "sales")
    sales, support = two_messages(app)
    client = signed_in(app, RESPONDER)
    token = csrf_token(client, "/admin/")
    data = {"csrf_token": token, "state": "archived", "body": "Thanks!", "text": "Noted.",
            "address": "ada@example.com"}
    for submission_id, expected in ((sales, own), (support, other)):
        if expected is None:
            continue
        url = path.format(id=submission_id, file=file_id(app, submission_id),
                          delivery=webhook_or_mail_id(app, submission_id))
        response = client.open(url, method=method, data=data if method == "POST" else None)
        response.close()  # a file download's stream
        assert response.status_code == expected, (url, response.status_code)
        if expected in (403, 404):
            body = response.get_data(as_text=True)
            assert ("Only an owner" in body) if expected == 403 else ("no message" in body)
    if other is None:
        response = client.open(path, method=method, data=data if method == "POST" else None)
        assert response.status_code == own
    with app.app_context():
        kept = db.session.get(Submission, support)
        assert kept is not None and kept.state == "new"


def test_the_route_table_covers_every_console_route_an_account_may_call(app: Flask) -> None:
    """ROUTES names every console rule but the list, sign-in, sign-out and the account's own
    pages (which every account has)."""
    found = {(method, rule.rule.replace("<submission_id>", "{id}")
              .replace("<int:file_id>", "{file}").replace("<int:delivery_id>", "{delivery}"))
             for rule in app.url_map.iter_rules() if rule.rule.startswith("/admin")
             for method in rule.methods or () if method in {"GET", "POST"}}
    everyone = {(method, path) for method, path in found
                if path in {"/admin/", "/admin/logout"}
                or path.startswith(("/admin/login", "/admin/account", "/admin/reauth"))}
    assert found - everyone == {(method, path) for method, path, _own, _other in ROUTES}


def test_the_list_search_and_count_keep_to_the_responders_recipients(app: Flask) -> None:
    """The list, a search matching both messages and the header's count of new messages show
    a responder the Sales message alone; the owner sees both."""
    create_owner(app)
    make_account(app, RESPONDER, "responder", "sales")
    two_messages(app)
    responder, owner = signed_in(app, RESPONDER), signed_in(app, "owner")
    for client, subjects, count in ((responder, ["For sales"], "1 new"),
                                    (owner, ["For sales", "For support"], "2 new")):
        for query in ("", "?q=for"):
            html = client.get(f"/admin/{query}").get_data(as_text=True)
            assert [s for s in ("For sales", "For support") if s in html] == subjects
            assert count in html
    html = responder.get("/admin/").get_data(as_text=True)
    assert "/admin/outbox" not in html and "/admin/export.csv" not in html


def test_a_responder_for_nothing_sees_nothing(app: Flask) -> None:
    """A responder whose recipients were all removed from the forms sees no message."""
    make_account(app, RESPONDER, "responder", "sales")
    two_messages(app)
    with app.app_context():
        user = auth.find_user(RESPONDER)
        assert user is not None
        user.recipients = "gone"
        db.session.commit()
    html = signed_in(app, RESPONDER).get("/admin/").get_data(as_text=True)
    assert "For sales" not in html and "For support" not in html


def test_users_commands_create_list_and_change_roles(app: Flask) -> None:
    """`users create --role responder --recipients`, `users list` showing role, recipients and
    second factors, `users set-role` ending the account's sessions; each in the audit log."""
    runner = app.test_cli_runner()
    make_account(app, "olive", "owner")
    make_account(app, RESPONDER, "responder", "sales, support-team")
    listed = runner.invoke(args=["users", "list"]).output
    assert "olive  owner  2fa none" in listed
    assert f"{RESPONDER}  responder for sales, support-team  2fa none" in listed
    client = signed_in(app, RESPONDER)
    result = runner.invoke(args=["users", "set-role", RESPONDER, "owner"])
    assert result.exit_code == 0, result.output
    assert f"{RESPONDER} is now owner" in result.output
    assert client.get("/admin/").status_code == 302  # signed out: it signs in again
    with app.app_context():
        lines = [(e.action, e.actor, e.detail) for e in db.session.scalars(
            db.select(AuditEntry).order_by(AuditEntry.id))]
    assert ("account created", RESPONDER, "responder for sales, support-team") in lines
    assert ("role changed", RESPONDER, "responder for sales, support-team to owner") in lines


@pytest.mark.parametrize(("args", "words"), [
    (["--role", "responder"], "A responder needs --recipients"),
    (["--role", "responder", "--recipients", "sales,billing"],
     "No recipient is declared as billing (declared: sales, support-team)."),
    (["--role", "owner", "--recipients", "sales"], "An owner sees every message"),
    (["--role", "admin"], "Invalid value for '--role'"),
])
def test_a_role_that_cannot_be_is_refused_with_words(app: Flask, args: list[str],
                                                     words: str) -> None:
    """A responder without recipients or with undeclared ones, an owner with some, or an
    unknown role: one plain sentence, no account made."""
    result = app.test_cli_runner().invoke(
        args=["users", "create", "someone", *args, "--password-stdin"], input=PASSWORD + "\n")
    assert result.exit_code != 0
    assert words in result.output
    with app.app_context():
        assert auth.find_user("someone") is None
