"""Every submission gets a verdict with its reasons, through the real form, the real
`GET /altcha` and the real SMTP server (docs/spam-verdicts.md).

ham: both mails; suspect: the owner's mail alone, marked; spam: stored, no mail, and
answered exactly like success. The console's "not spam" releases a held message;
/healthz and `outbox status` count the verdicts of the last 24 hours.
"""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from contact_site.delivery.models import MailKind, OutboxMail
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.admin import owner_client, post_action
from support.forms import post_form
from support.records import age
from support.smtp_server import ReceivedMail, SMTPTestServer
from support.spam import LAYERS_ON, served_ago, solve

OWNER_ADDRESS = "sales@example.com"
BLOCKED_DOMAIN = "casino-bonus.example"
BLOCKLIST = f"# the owner's own list\n{BLOCKED_DOMAIN}\ncheap pills\n"
HIDDEN = re.compile(r'name="(csrf_token|submission_key|form_time|altcha)" type="hidden" '
                    r'value="([^"]*)"')
FILLED_IN = 60  # seconds a visitor took over the form, unless the case says otherwise


@pytest.fixture
def site(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    """The app with every layer as shipped, the owner's blocklist, and delivery running."""
    blocklist = tmp_path / "blocklist.txt"
    blocklist.write_text(BLOCKLIST, encoding="utf-8")
    return make_app(CONTACT_BLOCKLIST_FILE=str(blocklist), **LAYERS_ON)


def page_fields(client: FlaskClient, path: str = "/") -> dict[str, str]:
    """The hidden fields of the form as the page serves them (altcha still empty)."""
    found = dict(HIDDEN.findall(client.get(path).get_data(as_text=True)))
    assert set(found) == {"csrf_token", "submission_key", "form_time", "altcha"}, found
    return found


def proof(client: FlaskClient) -> str:
    """A challenge from the real `GET /altcha`, solved as the page's worker does."""
    answer = client.get("/altcha")
    assert answer.status_code == 200
    return solve(answer.get_json())


def visitor() -> str:
    """A fresh visitor address: the thank-you cap never interferes."""
    return f"ada.{uuid.uuid4().hex[:8]}@example.com"


def send(app: Flask, client: FlaskClient, *, json_answer: bool = False,
         case: str | None = None, **fields: Any) -> Any:
    """A person's post: the page's fields, a solved proof, the form served a minute ago, a
    fresh address, subject and message; then the changes of a case of CASES, then `fields`."""
    page = page_fields(client)
    with app.app_context():
        tokens = {**page, "altcha": proof(client), "form_time": served_ago(FILLED_IN)}
    values = {"email": visitor(), "subject": f"Question {uuid.uuid4().hex[:6]}",
              "message": f"About engines ({uuid.uuid4().hex}).",
              **(CASES[case][0](client, page) if case else {}), **fields}
    return post_form(client, json=json_answer, tokens=tokens, **values)


def stored(app: Flask, email: str) -> Submission:
    """The one submission from this address, detached."""
    with app.app_context():
        [found] = db.session.scalars(select(Submission).where(Submission.email == email)).all()
        db.session.expunge(found)
        return found


def queued_kinds(app: Flask, email: str) -> list[str]:
    """The kinds of the mails queued for the submission from this address."""
    with app.app_context():
        return list(db.session.scalars(
            select(OutboxMail.kind).join(Submission).where(Submission.email == email)
            .order_by(OutboxMail.id)))


def after_a_ham_post(app: Flask, client: FlaskClient, smtp: SMTPTestServer,
                     before: int) -> list[ReceivedMail]:
    """Every mail the server got, once a later ham post's two mails have arrived.

    The outbox sends in queue order: anything queued before them has been sent by then.
    """
    assert send(app, client).status_code == 303
    return smtp.wait_for(before + 2, timeout=20)


def reply_to(mail: ReceivedMail) -> str:
    """The mail's Reply-To ("" for a thank-you, which has none)."""
    return str(mail.message["Reply-To"] or "")


def forged(payload: str) -> str:
    """A solution of ours with another number: no longer what the challenge hides."""
    solution = json.loads(base64.b64decode(payload))
    solution["number"] += 1
    return base64.b64encode(json.dumps(solution).encode()).decode()


def tampered(token: str) -> str:
    """The form's time token with the first character of its signature changed."""
    value, _, signature = token.rpartition(".")
    return f"{value}.{'A' if signature[0] != 'A' else 'B'}{signature[1:]}"


Changes = Callable[[FlaskClient, dict[str, str]], dict[str, str]]
# case: how the post differs from a person's (given the client and the page's own fields),
# the verdict, its reasons.
CASES: dict[str, tuple[Changes, str, tuple[str, ...]]] = {
    "too fast": (lambda c, page: {"form_time": page["form_time"]},  # served a moment ago
                 "spam", ("too_fast",)),
    "tampered time": (lambda c, page: {"form_time": tampered(page["form_time"])},
                      "spam", ("time_tampered",)),
    "no proof": (lambda c, page: {"altcha": ""}, "suspect", ("no_proof",)),
    "forged proof": (lambda c, page: {"altcha": forged(proof(c))}, "spam", ("proof_forged",)),
    "too many links": (lambda c, page: {"message": "See http://a.example, http://b.example, "
                                                   "www.c.example and https://d.example"},
                       "suspect", ("too_many_links",)),
    "blocklist": (lambda c, page: {"message": f"Win big at www.{BLOCKED_DOMAIN} today"},
                  "spam", (f"blocklist:{BLOCKED_DOMAIN}",)),
}


def post_case(app: Flask, client: FlaskClient, case: str) -> tuple[str, Any]:
    """Post one case of CASES; the visitor's address and the answer."""
    email = visitor()
    return email, send(app, client, case=case, email=email, subject=f"Case {case}")


@pytest.mark.parametrize("case", list(CASES))
def test_each_rule_gives_its_verdict_and_reason(site: Flask, smtp_server: SMTPTestServer,
                                                case: str) -> None:
    """The rule's reason alone is stored, with its verdict; the answer is a success."""
    _, verdict, reasons = CASES[case]
    client = site.test_client()
    email, answer = post_case(site, client, case)
    assert answer.status_code == 303 and answer.headers["Location"].endswith("/thanks")
    found = stored(site, email)
    assert (found.verdict, found.verdict_reasons.splitlines()) == (verdict, list(reasons))
    assert not found.thank_you_promised


@pytest.mark.parametrize("case", [c for c, (_, verdict, _) in CASES.items()
                                  if verdict == "suspect"])
def test_a_suspect_message_reaches_the_owner_marked_and_the_visitor_gets_nothing(
        site: Flask, smtp_server: SMTPTestServer, case: str) -> None:
    """The owner's mail with CONTACT_SUSPECT_PREFIX before the subject; no thank-you."""
    client = site.test_client()
    email, _ = post_case(site, client, case)
    assert queued_kinds(site, email) == [MailKind.OWNER]
    mails = after_a_ham_post(site, client, smtp_server, before=1)
    [marked] = [m for m in mails if f"<{email}>" in reply_to(m)]
    assert marked.rcpt_tos == [OWNER_ADDRESS]
    assert marked.message["Subject"] == f"[Possible spam] [Contact] Case {case}"
    assert all(email not in m.rcpt_tos for m in mails)


@pytest.mark.parametrize("case", [c for c, (_, verdict, _) in CASES.items()
                                  if verdict == "spam"])
def test_spam_is_stored_and_nothing_is_sent(site: Flask, smtp_server: SMTPTestServer,
                                            case: str) -> None:
    """No mail is queued or sent, to the owner or the address given; the message is kept."""
    client = site.test_client()
    email, _ = post_case(site, client, case)
    assert queued_kinds(site, email) == []
    assert stored(site, email).subject == f"Case {case}"
    mails = after_a_ham_post(site, client, smtp_server, before=0)
    assert len(mails) == 2
    assert all(email not in reply_to(m) and email not in m.rcpt_tos for m in mails)


def test_a_visitor_who_solved_a_real_challenge_gets_both_mails(
        site: Flask, smtp_server: SMTPTestServer) -> None:
    """The page's own time, a challenge of GET /altcha solved, posted after the minimum: ham."""
    client = site.test_client()
    tokens = page_fields(client)
    served = time.monotonic()
    tokens["altcha"] = proof(client)
    time.sleep(max(0.0, LAYERS_ON["CONTACT_MIN_FILL_SECONDS"] + 0.2 - (time.monotonic() - served)))
    email = visitor()
    answer = post_form(client, tokens=tokens, email=email, subject="Engines")
    assert answer.status_code == 303
    found = stored(site, email)
    assert (found.verdict, found.verdict_reasons, found.thank_you_promised) == ("ham", "", True)
    mails = smtp_server.wait_for(2, timeout=20)
    assert sorted(m.rcpt_tos[0] for m in mails) == sorted([OWNER_ADDRESS, email])
    owner = next(m for m in mails if m.rcpt_tos == [OWNER_ADDRESS])
    assert owner.message["Subject"] == "[Contact] Engines"
    thanks = next(m for m in mails if m.rcpt_tos == [email])
    assert [p.get_content_type() for p in thanks.message.iter_attachments()] == [
        "application/pdf"]


def test_a_replayed_proof_is_suspect(site: Flask, smtp_server: SMTPTestServer) -> None:
    """The same solution in a second message: owner's mail only, marked proof_replayed."""
    client = site.test_client()
    payload = proof(client)
    first, again = visitor(), visitor()
    assert send(site, client, email=first, altcha=payload).status_code == 303
    assert send(site, client, email=again, altcha=payload).status_code == 303
    assert (stored(site, first).verdict, stored(site, first).verdict_reasons) == ("ham", "")
    replayed = stored(site, again)
    assert (replayed.verdict, replayed.verdict_reasons) == ("suspect", "proof_replayed")
    assert queued_kinds(site, again) == [MailKind.OWNER]


def test_the_same_message_again_from_the_same_network_is_spam(
        site: Flask, smtp_server: SMTPTestServer) -> None:
    """A second post of one text (other address, fresh proof) within a day: duplicate."""
    client = site.test_client()
    text = "Dear owner, I would like a quote for an engine.\nKind regards"
    first, again = visitor(), visitor()
    assert send(site, client, email=first, message=text).status_code == 303
    assert send(site, client, email=again, message=text.upper()).status_code == 303
    assert stored(site, first).verdict == "ham"
    duplicate = stored(site, again)
    assert (duplicate.verdict, duplicate.verdict_reasons) == ("spam", "duplicate")
    assert queued_kinds(site, again) == []


def test_the_same_message_from_another_network_is_not_a_duplicate(
        site: Flask, smtp_server: SMTPTestServer) -> None:
    """Two visitors who happen to write the same words are each ham."""
    text = "Hello, what are your opening hours?"
    emails = []
    for address in ("192.0.2.10", "198.51.100.20"):
        client = site.test_client()
        client.environ_base["REMOTE_ADDR"] = address
        emails.append(visitor())
        assert send(site, client, email=emails[-1], message=text).status_code == 303
    assert [stored(site, email).verdict for email in emails] == ["ham", "ham"]


@pytest.mark.parametrize("json_answer", [False, True], ids=["html", "json"])
def test_spam_is_answered_exactly_like_success(site: Flask, json_answer: bool) -> None:
    """Status, headers' shape and body do not tell a bot its post was caught."""
    client = site.test_client()
    ham = send(site, client, json_answer=json_answer)
    spam = send(site, client, json_answer=json_answer, case="too fast")
    assert ham.status_code == spam.status_code == (202 if json_answer else 303)
    assert sorted(ham.headers.keys()) == sorted(spam.headers.keys())
    if json_answer:
        assert ham.get_json().keys() == spam.get_json().keys() == {"id", "status"}
        assert spam.get_json()["status"] == "queued"
    else:
        assert ham.headers["Location"] == spam.headers["Location"]
        assert ham.get_data() == spam.get_data()
    with site.app_context():
        verdicts = sorted(db.session.scalars(select(Submission.verdict)))
    assert verdicts == ["ham", "spam"]


def test_a_form_sent_back_with_errors_keeps_its_time_and_asks_for_a_new_proof(
        site: Flask) -> None:
    """422: the same signed time (a fresh one would make the fix look too fast), altcha empty."""
    client = site.test_client()
    tokens = page_fields(client)
    tokens["altcha"] = proof(client)
    answer = post_form(client, tokens=tokens, subject="")
    assert answer.status_code == 422
    again = dict(HIDDEN.findall(answer.get_data(as_text=True)))
    assert again["form_time"] == tokens["form_time"]
    assert again["altcha"] == ""


def test_the_page_loads_the_proof_of_work_script_only_when_it_is_on(
        make_app: Callable[..., Flask]) -> None:
    """CONTACT_PROOF_OF_WORK=altcha: altcha.js, deferred, external; off: not at all."""
    on = make_app(deliver=False, **LAYERS_ON).test_client().get("/").get_data(as_text=True)
    off = make_app(deliver=False).test_client().get("/").get_data(as_text=True)
    assert '<script src="/static/altcha.js" defer></script>' in on
    assert 'data-altcha-url="/altcha"' in on
    assert "altcha.js" not in off


def test_not_spam_in_the_console_releases_a_held_message(
        site: Flask, smtp_server: SMTPTestServer) -> None:
    """Spam shows with its reason; "not spam" sends the owner's mail, unmarked, no thank-you."""
    client = site.test_client()
    email = visitor()
    assert send(site, client, case="too fast", email=email, subject="Held").status_code == 303
    held = stored(site, email)
    owner = owner_client(site)
    detail = owner.get(f"/admin/submissions/{held.id}").get_data(as_text=True)
    assert "sent sooner after the page was served than a person could write it" in detail
    assert re.search(r'<span class="state state-spam">spam</span>',
                     owner.get("/admin/?status=spam").get_data(as_text=True))
    answer = post_action(owner, f"/admin/submissions/{held.id}/not-spam")
    assert answer.status_code == 303
    [mail] = smtp_server.wait_for(1, timeout=20)
    assert (mail.rcpt_tos, mail.message["Subject"]) == ([OWNER_ADDRESS], "[Contact] Held")
    released = stored(site, email)
    assert released.verdict == "ham"
    assert released.verdict_reasons.splitlines() == ["too_fast", "released"]
    assert queued_kinds(site, email) == [MailKind.OWNER]
    assert "released in the console" in owner.get(
        f"/admin/submissions/{held.id}").get_data(as_text=True)


def test_the_console_lists_suspect_messages_under_their_filter_and_in_all(
        site: Flask, smtp_server: SMTPTestServer) -> None:
    """?status=suspect: the suspect ones, marked; `all` shows them too and hides spam."""
    client = site.test_client()
    send(site, client, subject="Plain")
    send(site, client, subject="Without proof", altcha="")
    send(site, client, case="too fast", subject="Too quick")
    owner = owner_client(site)

    def subjects(status: str) -> list[str]:
        html = owner.get("/admin/", query_string={"status": status}).get_data(as_text=True)
        return re.findall(r'<td data-label="Subject"><a href="[^"]+">([^<]*)</a>', html)

    assert subjects("suspect") == ["Without proof"]
    assert sorted(subjects("all")) == ["Plain", "Without proof"]
    assert subjects("spam") == ["Too quick"]
    listing = owner.get("/admin/", query_string={"status": "suspect"}).get_data(as_text=True)
    assert '<span class="state state-suspect">suspect</span>' in listing


def test_healthz_and_outbox_status_count_the_verdicts_of_the_last_24_hours(
        site: Flask, smtp_server: SMTPTestServer) -> None:
    """One of each today, and one ham of two days ago that no longer counts."""
    client = site.test_client()
    old = visitor()
    send(site, client, email=old)
    age(site, stored(site, old).id, days=2)
    send(site, client)
    send(site, client, altcha="")
    send(site, client, case="too fast")
    body = client.get("/healthz").get_json()
    assert body["verdicts"] == {"ham": 1, "suspect": 1, "spam": 1}
    assert set(body) == {"status", "outbox", "mails", "webhooks", "smtp", "verdicts"}
    result = site.test_cli_runner().invoke(args=["outbox", "status"])
    assert result.exit_code == 0, result.output
    assert "verdicts of the last 24 h: ham 1, suspect 1, spam 1" in result.output.splitlines()
