"""Helpers shared by the console tests: accounts, signing in, submissions with chosen fields."""

from __future__ import annotations

import re
from typing import Any

from delivery_helpers import queue_submissions
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from contact_site.admin import auth
from contact_site.delivery.models import OutboxMail
from contact_site.extensions import db
from contact_site.submissions.models import Submission

OWNER = "owner"
PASSWORD = "correct horse battery staple"
TOKEN = re.compile(r'name="csrf_token"[^>]*?value="([^"]+)"')


def create_owner(app: Flask, name: str = OWNER, password: str = PASSWORD) -> None:
    """An account, as `users create` makes it."""
    with app.app_context():
        auth.create_user(name, password)
        db.session.commit()


def csrf_token(client: FlaskClient, path: str = "/admin/login") -> str:
    """The CSRF token of a console page, as a browser would find it in the form."""
    found = TOKEN.search(client.get(path).get_data(as_text=True))
    assert found, f"{path} has no CSRF token"
    return found.group(1)


def sign_in(client: FlaskClient, name: str = OWNER, password: str = PASSWORD,
            **environ: Any) -> Any:
    """POST the sign-in form with a fresh token; the response."""
    token = csrf_token(client)
    return client.post("/admin/login", data={"csrf_token": token, "username": name,
                                             "password": password},
                       environ_base=environ)


def owner_client(app: Flask) -> FlaskClient:
    """A client signed in as the owner (the account is created)."""
    create_owner(app)
    client = app.test_client()
    assert sign_in(client).status_code == 303
    return client


def post_action(client: FlaskClient, path: str, **data: str) -> Any:
    """POST a console form with the token of a console page."""
    return client.post(path, data={"csrf_token": csrf_token(client, "/admin/outbox"), **data})


def add_submission(app: Flask, thank_you: bool = False, attachment: bytes | None = None,
                   **fields: Any) -> str:
    """Store one submission with its mails, these fields changed; its id."""
    mail_ids = queue_submissions(app, 1, thank_you=thank_you, attachment=attachment)
    with app.app_context():
        mail = db.session.get(OutboxMail, mail_ids[0])
        assert mail is not None
        submission = db.session.get(Submission, mail.submission_id)
        assert submission is not None
        for name, value in fields.items():
            setattr(submission, name, value)
        db.session.commit()
        return submission.id


def mails_of(app: Flask, submission_id: str) -> list[OutboxMail]:
    """The submission's outbox rows, detached."""
    with app.app_context():
        found = list(db.session.scalars(select(OutboxMail).where(
            OutboxMail.submission_id == submission_id).order_by(OutboxMail.id)))
        db.session.expunge_all()
        return found
