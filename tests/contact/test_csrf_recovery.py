"""A broken or expired CSRF token keeps what was typed; a known key folds only the same content."""

from __future__ import annotations

import html
import io
import re
import time

import pytest
from sqlalchemy import func, select

from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.forms import PDF_BYTES_FOR_TESTS, VALID, form_tokens, post_form
from support.waiting import wait_until

TOKENS = re.compile(r'name="(csrf_token|submission_key)" type="hidden" value="([^"]+)"')
TYPED = {"recipient": "support-team", "name": "Grace Hopper", "email": "grace@example.com",
         "subject": "Compilers & <you>", "message": "First line,\nsecond line about COBOL."}


def page_tokens(page: str) -> dict[str, str]:
    """The csrf_token and submission_key a rendered form carries."""
    found = dict(TOKENS.findall(page))
    assert set(found) == {"csrf_token", "submission_key"}, "the page holds no form to resend"
    return found


def submissions(app) -> list[Submission]:
    """Every stored submission, oldest first, detached."""
    with app.app_context():
        found = list(db.session.scalars(select(Submission).order_by(Submission.created_at)))
        db.session.expunge_all()
        return found


def test_the_contact_page_is_never_cached(client):
    """GET / carries a per-visitor token and key: `Cache-Control: no-store`."""
    assert client.get("/").headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("token", ["tampered", None], ids=["tampered", "missing"])
def test_a_bad_token_answers_400_with_the_typed_inputs_in_a_fresh_form(app, client, token):
    tokens = form_tokens(client)
    response = post_form(client, tokens={"csrf_token": token,
                                         "submission_key": tokens["submission_key"]}, **TYPED)
    assert response.status_code == 400
    assert response.headers["Cache-Control"] == "no-store"
    page = response.get_data(as_text=True)
    assert "security token" in page and "nothing was sent" in page
    for name in ("name", "email", "subject"):
        assert f'value="{html.escape(TYPED[name])}"' in page
    assert html.escape("second line about COBOL.") in page
    assert '<option value="support-team" selected>' in page
    fresh = page_tokens(page)  # valid now (signed this second); resending is tested below
    assert fresh["csrf_token"] != token
    assert fresh["submission_key"] == tokens["submission_key"]
    assert submissions(app) == []


def test_the_400_page_asks_to_choose_the_file_again(app, client):
    response = post_form(client, tokens={**form_tokens(client), "csrf_token": "tampered"},
                         attachment=(io.BytesIO(PDF_BYTES_FOR_TESTS), "plan.pdf"))
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Choose your file again" in page
    assert "plan.pdf" not in page


def test_the_form_from_the_400_page_sends_the_message(app, client, smtp_server):
    """Tampered token: 400 with the inputs; sent again from that page: delivered, once."""
    tokens = form_tokens(client)
    refused = post_form(client, tokens={**tokens, "csrf_token": "tampered"}, **TYPED)
    assert refused.status_code == 400
    again = post_form(client, tokens=page_tokens(refused.get_data(as_text=True)), **TYPED)
    assert again.status_code == 303
    received = {mail.rcpt_tos[0]: mail for mail in smtp_server.wait_for(2)}
    assert set(received) == {"support@example.com", "grace@example.com"}
    assert "second line about COBOL." in received["support@example.com"].message.as_string()
    assert len(submissions(app)) == 1


@pytest.mark.settings(WTF_CSRF_TIME_LIMIT=1)
def test_an_expired_token_keeps_the_inputs_and_the_fresh_form_sends(app, smtp_server):
    """A visitor who wrote for longer than the token lives loses nothing."""
    client = app.test_client()
    tokens = form_tokens(client)
    time.sleep(2.1)  # itsdangerous counts whole seconds: past a 1 s life for sure
    expired = post_form(client, tokens=tokens, **TYPED)
    assert expired.status_code == 400
    page = expired.get_data(as_text=True)
    assert f'value="{TYPED["email"]}"' in page
    assert post_form(client, tokens=page_tokens(page), **TYPED).status_code == 303
    smtp_server.wait_for(2)


def test_a_bad_token_still_answers_json_400_as_before(app, client):
    response = post_form(client, json=True, tokens={**form_tokens(client), "csrf_token": "x"})
    assert response.status_code == 400
    assert list(response.get_json()) == ["errors"]
    assert list(response.get_json()["errors"]) == ["csrf_token"]


PDF_OTHER = PDF_BYTES_FOR_TESTS.replace(b"1 0 obj", b"2 0 obj")


@pytest.mark.parametrize(("second", "stored"), [
    ({}, 1),
    ({"message": VALID["message"] + " And another thing."}, 2),
    ({"subject": "Engines, again"}, 2),
    ({"email": "eve@example.com"}, 2),
    ({"attachment": (io.BytesIO(PDF_OTHER), "plan.pdf")}, 2),
], ids=["same content folds", "other message", "other subject", "other address", "other file"])
def test_a_known_key_folds_only_the_same_content(app, client, second, stored):
    tokens = form_tokens(client)
    first = post_form(client, json=True, tokens=tokens,
                      attachment=(io.BytesIO(PDF_BYTES_FOR_TESTS), "plan.pdf"))
    fields = {"attachment": (io.BytesIO(PDF_BYTES_FOR_TESTS), "plan.pdf"), **second}
    again = post_form(client, json=True, tokens=tokens, **fields)
    assert first.status_code == again.status_code == 202
    assert (first.get_json() == again.get_json()) == (stored == 1)
    rows = submissions(app)
    assert len(rows) == stored
    assert len({row.submission_key for row in rows}) == stored  # a fresh key for the new one
    assert all(len(row.content_hash or "") == 64 for row in rows)


def test_same_key_other_content_sends_both_messages(app, client, smtp_server):
    """Two messages, one key (a cached or copied form): both reach the owner."""
    tokens = form_tokens(client)
    assert post_form(client, tokens=tokens).status_code == 303
    assert post_form(client, tokens=tokens, subject="Second thoughts").status_code == 303
    wait_until(lambda: len(smtp_server.messages) >= 4, 15, "four mails")
    subjects = sorted(m.message["Subject"] for m in smtp_server.messages
                      if m.rcpt_tos == ["sales@example.com"])
    assert subjects == ["[Contact] Engines", "[Contact] Second thoughts"]
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Submission)) == 2
