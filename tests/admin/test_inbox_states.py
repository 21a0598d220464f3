"""The owner's inbox: each message new, read, answered or archived; opening marks it read,
the owner sets the rest; the list filters by state; the header counts the new ones."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select, text

from contact_site.admin.audit import AuditEntry
from contact_site.extensions import db
from contact_site.submissions.models import STATES, Submission
from support.admin import owner_client, post_action
from support.factories import create_submission

pytestmark = pytest.mark.manual_delivery

# The `store_declared` fixture (conftest.py): a declared form's submission stored; its id.
StoreDeclared = Callable[..., str]
ROW = re.compile(r'<td data-label="Subject"><a href="[^"]+">([^<]*)</a>.*?'
                 r'<td data-label="State"><span class="inbox-state">([^<]*)</span>', re.S)
# One message in each state, and one new message filed as spam.
EACH_STATE = {"New one": "new", "Read one": "read", "Answered one": "answered",
              "Archived one": "archived"}


def page_text(client: FlaskClient, path: str, **query: str) -> str:
    """The page's HTML, after checking it answered 200."""
    response = client.get(path, query_string=query)
    assert response.status_code == 200, response.get_data(as_text=True)[:500]
    return response.get_data(as_text=True)


def listed(html: str) -> list[tuple[str, str]]:
    """(subject, state) of each of the list's rows, in order."""
    return ROW.findall(html)


def listed_subjects(html: str) -> list[str]:
    """The subjects of the list's rows, in order."""
    return [subject for subject, _state in listed(html)]


def state_of(app: Flask, submission_id: str) -> str:
    """The stored state of one submission."""
    with app.app_context():
        return db.session.execute(select(Submission.state).where(
            Submission.id == submission_id)).scalar_one()


def audit_lines(app: Flask, action: str) -> list[tuple[str | None, str | None, str]]:
    """(who, which submission, detail) of each audit line of this action, oldest first."""
    with app.app_context():
        return [(actor, submission_id, detail) for actor, submission_id, detail in
                db.session.execute(select(AuditEntry.actor, AuditEntry.submission_id,
                                          AuditEntry.detail)
                                   .where(AuditEntry.action == action).order_by(AuditEntry.id))]


def one_in_each_state(app: Flask) -> dict[str, str]:
    """Store EACH_STATE (newest last) and a new spam message; id by subject."""
    made = {subject: create_submission(app, subject=subject, state=state)
            for subject, state in EACH_STATE.items()}
    made["Spam one"] = create_submission(app, subject="Spam one", verdict="spam")
    return made


def title(html: str) -> str:
    """The page's <title>, its white space folded."""
    found = re.search(r"<title>(.*?)</title>", html, re.S)
    assert found
    return " ".join(found.group(1).split())


def new_badge(html: str) -> str | None:
    """The count beside "Messages" in the console's header, if shown."""
    found = re.search(r'<span class="console-count">([^<]*)</span>', html)
    return found.group(1) if found else None


@pytest.mark.each_database
def test_a_new_submission_is_new_and_opening_it_marks_it_read(app: Flask) -> None:
    """Stored as new; the owner's GET of its page makes it read, a HEAD request does not."""
    submission_id = create_submission(app)
    client = owner_client(app)
    assert state_of(app, submission_id) == "new"
    assert client.head(f"/admin/submissions/{submission_id}").status_code == 200
    assert state_of(app, submission_id) == "new"
    html = page_text(client, f"/admin/submissions/{submission_id}")
    assert state_of(app, submission_id) == "read"
    assert '<dt>State</dt><dd><span class="inbox-state">read</span></dd>' in html
    assert audit_lines(app, "state") == []  # reading is not an action of the log


@pytest.mark.each_database
@pytest.mark.parametrize("state", ["read", "answered", "archived"])
def test_opening_leaves_a_state_the_owner_set(app: Flask, state: str) -> None:
    """A message already read, answered or archived stays so when opened."""
    submission_id = create_submission(app, state=state)
    page_text(owner_client(app), f"/admin/submissions/{submission_id}")
    assert state_of(app, submission_id) == state


def test_signed_out_nothing_is_marked_read(app: Flask) -> None:
    """Without a signed-in owner the page is a redirect to sign in, and the message stays new."""
    submission_id = create_submission(app)
    response = app.test_client().get(f"/admin/submissions/{submission_id}")
    assert response.status_code == 302 and "/admin/login" in response.headers["Location"]
    assert state_of(app, submission_id) == "new"


@pytest.mark.each_database
@pytest.mark.parametrize(("before", "after"), [
    ("read", "new"), ("new", "read"), ("read", "answered"), ("read", "archived"),
    ("archived", "read"),
])
def test_the_owner_sets_each_state(app: Flask, before: str, after: str) -> None:
    """POST …/state sets it; the audit log says who and which message; the owner is told.
    Marked new, the owner goes back to the list (its page would mark it read again)."""
    submission_id = create_submission(app, state=before)
    client = owner_client(app)
    response = post_action(client, f"/admin/submissions/{submission_id}/state", state=after)
    assert response.status_code == 303
    back = "/admin/" if after == "new" else f"/admin/submissions/{submission_id}"
    assert response.headers["Location"] == back
    assert state_of(app, submission_id) == after
    assert audit_lines(app, "state") == [("owner", submission_id, f"{before} to {after}")]
    notice = {"new": "Marked as new.", "read": "Marked as read.",
              "answered": "Marked as answered.", "archived": "Archived."}[after]
    assert notice in page_text(client, "/admin/audit")  # the next page shows the notice


def test_an_unknown_state_is_a_plain_400(app: Flask) -> None:
    """state=spam (or none): 400 naming the four states; nothing changes, nothing logged."""
    submission_id = create_submission(app)
    client = owner_client(app)
    for data in ({"state": "spam"}, {}):
        response = post_action(client, f"/admin/submissions/{submission_id}/state", **data)
        assert response.status_code == 400
        assert "Unknown state. Use one of: new, read, answered, archived." in \
            response.get_data(as_text=True)
    assert state_of(app, submission_id) == "new"
    assert audit_lines(app, "state") == []


def test_setting_a_state_without_a_token_is_refused(app: Flask) -> None:
    """A POST without the CSRF token: 400, the state unchanged, nothing logged."""
    submission_id = create_submission(app)
    response = owner_client(app).post(f"/admin/submissions/{submission_id}/state",
                                      data={"state": "archived"})
    assert response.status_code == 400
    assert "security token" in response.get_data(as_text=True)
    assert state_of(app, submission_id) == "new"
    assert audit_lines(app, "state") == []


def test_setting_the_state_of_an_unknown_message_is_a_404(app: Flask) -> None:
    """A deleted or mistyped id: 404 in plain words."""
    response = post_action(owner_client(app), "/admin/submissions/nope/state", state="read")
    assert response.status_code == 404
    assert "no message with this id" in response.get_data(as_text=True)


@pytest.mark.each_database
def test_the_detail_offers_every_other_state(app: Flask) -> None:
    """Its page shows the state in words and a labelled button for each other state, each
    in a form of its own with the token."""
    submission_id = create_submission(app, state="answered")
    html = page_text(owner_client(app), f"/admin/submissions/{submission_id}")
    group = html[html.index('<div class="console-actions console-states"'):]
    group = group[:group.index("</div>")]
    assert 'role="group" aria-label="Set the state"' in group
    forms = re.findall(r'<form method="post" action="([^"]+)">\s*<input type="hidden" '
                       r'name="csrf_token" value="[^"]+">\s*<input type="hidden" name="state" '
                       r'value="(\w+)">\s*<button type="submit" class="button button-secondary">'
                       r"([^<]+)</button>", group)
    assert forms == [(f"/admin/submissions/{submission_id}/state", state, label)
                     for state, label in (("new", "Mark as new"), ("read", "Mark as read"),
                                          ("archived", "Archive"))]


@pytest.mark.each_database
@pytest.mark.parametrize(("query", "expected"), [
    ({}, [("Answered one", "answered"), ("Read one", "read"), ("New one", "new")]),
    ({"state": ""}, [("Answered one", "answered"), ("Read one", "read"), ("New one", "new")]),
    ({"state": "new"}, [("New one", "new")]),
    ({"state": "read"}, [("Read one", "read")]),
    ({"state": "answered"}, [("Answered one", "answered")]),
    ({"state": "archived"}, [("Archived one", "archived")]),
    ({"state": "all"}, [("Archived one", "archived"), ("Answered one", "answered"),
                        ("Read one", "read"), ("New one", "new")]),
    # With the other filters: spam is under its own, in any state.
    ({"state": "new", "status": "spam"}, [("Spam one", "new")]),
    ({"state": "all", "q": "archived"}, [("Archived one", "archived")]),
    ({"q": "archived"}, []),
])
def test_the_list_filters_by_state(app: Flask, query: dict[str, str],
                                   expected: list[tuple[str, str]]) -> None:
    """?state= keeps one state, or `all`; by default every state but archived (spam aside,
    as ever); each row shows its state in words."""
    one_in_each_state(app)
    html = page_text(owner_client(app), "/admin/", **query)
    assert listed(html) == expected
    chosen = query.get("state", "")
    assert f'<option value="{chosen}" selected>' in html


@pytest.mark.usefixtures("forms_file")
@pytest.mark.each_database
def test_the_state_filter_combines_with_the_form_filter(app: Flask,
                                                        store_declared: StoreDeclared) -> None:
    """?form= and ?state= together: one form's messages in that state; the export link and
    the pages keep both."""
    person = {"name": "Grace Hopper", "email": "grace@example.com"}
    store_declared("careers", person, subject="Careers new")
    store_declared("careers", person, subject="Careers archived", state="archived")
    store_declared("contact", person, subject="Contact archived", state="archived")
    client = owner_client(app)
    html = page_text(client, "/admin/", form="careers", state="archived")
    assert listed_subjects(html) == ["Careers archived"]
    assert 'href="/admin/export.csv?status=all&amp;form=careers&amp;state=archived"' in html
    assert listed_subjects(page_text(client, "/admin/", form="careers")) == ["Careers new"]


def test_an_unknown_state_filter_is_a_plain_400(app: Flask) -> None:
    """?state=nonsense: 400 naming the filters, not a 500."""
    response = owner_client(app).get("/admin/?state=nonsense")
    assert response.status_code == 400
    assert "Unknown state filter. Use one of: new, read, answered, archived, all." in \
        response.get_data(as_text=True)


@pytest.mark.each_database
def test_the_header_and_title_count_the_new_messages(app: Flask) -> None:
    """Beside "Messages" on every console page, and first in the list's title: the new
    messages, spam left out; opening one counts it down; with none, no count at all."""
    made = {subject: create_submission(app, subject=subject) for subject in ("One", "Two")}
    made.update(one_in_each_state(app))  # one more new, and a new spam message
    client = owner_client(app)
    html = page_text(client, "/admin/")
    assert new_badge(html) == "3 new"
    assert title(html) == "(3) Messages – Console"
    assert new_badge(page_text(client, "/admin/outbox")) == "3 new"
    detail = page_text(client, f"/admin/submissions/{made['One']}")  # now read
    assert new_badge(detail) == "2 new"
    post_action(client, f"/admin/submissions/{made['Two']}/state", state="answered")
    assert new_badge(page_text(client, "/admin/")) == "1 new"
    post_action(client, f"/admin/submissions/{made['New one']}/state", state="archived")
    html = page_text(client, "/admin/")
    assert new_badge(html) is None and title(html) == "Messages – Console"


def test_new_spam_is_never_counted(app: Flask) -> None:
    """New messages filed as spam alone: no count in the header, the title as it always was."""
    create_submission(app, verdict="spam")
    create_submission(app, state="read")
    html = page_text(owner_client(app), "/admin/")
    assert new_badge(html) is None
    assert title(html) == "Messages – Console"


@pytest.mark.each_database
def test_the_count_reads_the_index_alone(app: Flask) -> None:
    """The count of new messages is answered from ix_submission_state_verdict without
    reading the table (PostgreSQL told not to scan it, as it would for a table this small)."""
    create_submission(app)
    count = ("SELECT count(*) FROM submission WHERE state = 'new' AND verdict != 'spam'")
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            plan = " ".join(str(row[-1]) for row in db.session.execute(
                text(f"EXPLAIN QUERY PLAN {count}")))
            assert "COVERING INDEX ix_submission_state_verdict" in plan
        else:
            db.session.execute(text("SET LOCAL enable_seqscan = off"))
            plan = " ".join(row[0] for row in db.session.execute(text(f"EXPLAIN {count}")))
            assert "Index Only Scan using ix_submission_state_verdict" in plan
        db.session.rollback()


@pytest.mark.each_database
@pytest.mark.parametrize("kind", ["csv", "json"])
def test_the_exports_carry_the_state_and_follow_its_filter(app: Flask, kind: str) -> None:
    """The list's exports: a `state` per message; by default archived ones are left out, as
    on the list; ?state=all takes them too; the audit line names the state filter."""
    one_in_each_state(app)
    client = owner_client(app)

    def exported(**query: str) -> dict[str, str]:
        body = client.get(f"/admin/export.{kind}", query_string=query).get_data(as_text=True)
        records = list(csv.DictReader(io.StringIO(body))) if kind == "csv" else json.loads(body)
        return {record["subject"]: record["state"] for record in records}

    assert exported() == {subject: state for subject, state in EACH_STATE.items()
                          if state != "archived"}
    assert exported(state="all") == EACH_STATE
    assert exported(state="archived") == {"Archived one": "archived"}
    assert [detail for _who, _which, detail in audit_lines(app, "export")] == [
        f"{kind}, filter all", f"{kind}, filter all, state all",
        f"{kind}, filter all, state archived"]


def test_every_state_is_one_the_console_can_set(app: Flask) -> None:
    """The states declared once are those the form posts and the list filters by."""
    submission_id = create_submission(app)
    client = owner_client(app)
    for state in STATES:
        post_action(client, f"/admin/submissions/{submission_id}/state", state=state)
        assert state_of(app, submission_id) == state
        assert listed(page_text(client, "/admin/", state=state)) == [("Engines 0", state)]
