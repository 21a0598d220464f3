"""The console as its owner uses it: an account, signing in, posting a console form."""

from __future__ import annotations

import re
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from contact_site.admin import auth
from contact_site.extensions import db

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
