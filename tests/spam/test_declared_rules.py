"""The spam rules and the double-submit fold read every declared field, not a fixed list."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from contact_site.extensions import db
from contact_site.spam.verdict import reasons_from_text
from contact_site.submissions.models import Submission
from support.forms_files import EVERY_TYPE, hidden_fields, post_declared, write_forms

FORM = "/f/kinds"
REQUIRED = {"email": "ada@example.com", "agree": "y", "terms": "y"}


def kinds_app(make_app: Callable[..., Flask], tmp_path: Path, **settings: object) -> Flask:
    """The form with a field of every type, the owner's blocklist naming "cheap pills"."""
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text("cheap pills\nspam.example\n", encoding="utf-8")
    return make_app(deliver=False, CONTACT_BLOCKLIST_FILE=str(blocklist),
                    CONTACT_FORMS_FILE=str(write_forms(tmp_path / "site", EVERY_TYPE)),
                    **settings)


def stored(app: Flask) -> list[tuple[str, tuple[str, ...]]]:
    """Each stored submission's verdict and reasons, oldest first."""
    with app.app_context():
        rows = db.session.scalars(select(Submission).order_by(Submission.created_at))
        return [(row.verdict, reasons_from_text(row.verdict_reasons)) for row in rows]


def test_the_blocklist_reads_a_declared_text_field(make_app: Callable[..., Flask],
                                                   tmp_path: Path) -> None:
    """An entry found in a field the built-in form does not have makes the message spam."""
    app = kinds_app(make_app, tmp_path)
    client = app.test_client()
    assert post_declared(client, FORM, {**REQUIRED, "line": "Cheap  PILLS here"}).status_code == 202
    assert post_declared(client, FORM, {**REQUIRED, "homepage": "https://spam.example/x"}
                         ).status_code == 202
    assert post_declared(client, FORM, {**REQUIRED, "line": "a fair question"}).status_code == 202
    assert stored(app) == [("spam", ("blocklist:cheap pills",)),
                           ("spam", ("blocklist:spam.example",)), ("ham", ())]


def test_links_are_counted_in_the_declared_free_text(make_app: Callable[..., Flask],
                                                     tmp_path: Path) -> None:
    """A form without `message` has its links counted in its textarea."""
    app = kinds_app(make_app, tmp_path, CONTACT_MAX_LINKS=1)
    links = "see https://a.example and https://b.example"
    assert post_declared(app.test_client(), FORM, {**REQUIRED, "notes": links}).status_code == 202
    assert stored(app) == [("suspect", ("too_many_links",))]


def post_with_key(client: FlaskClient, key: str, **fields: str) -> TestResponse:
    """The form posted with the submission key `key` (as a double click sends it twice)."""
    data = {**hidden_fields(client, FORM), **REQUIRED, **fields, "submission_key": key}
    return client.post(FORM, data=data, headers={"Accept": "application/json"})


def test_a_resend_folds_only_when_every_declared_field_is_the_same(
        make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """The same key and the same words fold into one; a change in any declared field (here
    the phone, which the built-in form lacks) is a submission of its own."""
    app = kinds_app(make_app, tmp_path)
    client = app.test_client()
    key = hidden_fields(client, FORM)["submission_key"]
    first = post_with_key(client, key, phone="+44 20 7946 0000").get_json()["id"]
    again = post_with_key(client, key, phone="+44 20 7946 0000").get_json()["id"]
    other = post_with_key(client, key, phone="+44 20 7946 0001").get_json()["id"]
    assert first == again != other
    assert len(stored(app)) == 2
