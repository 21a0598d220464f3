"""Forms on other sites, through the real app (docs/embedding.md): a plain HTML form posting
from an allowed origin, the embed script's token, fragment and CORS answers, the iframe's page
and who may frame it; a site not listed is refused and nothing is stored; the site's own page
keeps its CSRF check and its frame policy."""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.test import TestResponse

from contact_site.delivery.models import MailKind
from contact_site.embedding import tokens
from contact_site.extensions import db
from contact_site.security import CONTENT_SECURITY_POLICY
from contact_site.submissions.models import Submission
from support.forms_files import post_declared, write_forms
from support.outbox import mails_of
from support.records import counts
from support.spam import LAYERS_ON, fresh_proof

ALLOWED = ["https://www.example.com", "https://*.example.org", "http://127.0.0.1:8001"]
HOST_PAGE = "https://www.example.com"
SHOP = "https://shop.example.org"  # allowed by the wildcard
JOBS = "https://jobs.example.net"  # allowed by the careers form only
EVIL = "https://evil.example"
OWN = "http://localhost"  # the test client's site
FORMS = f"""
[site]
name = "Example Ltd"
home_url = "https://www.example.com/"

[[forms]]
slug = "contact"
title = {{ en = "Contact us", zh = "联系我们" }}
recipients = ["Owner <owner@example.com>"]
allowed_origins = [{", ".join(f'"{origin}"' for origin in ALLOWED)}]

  [[forms.fields]]
  name = "name"
  type = "text"
  label = {{ en = "Full name", zh = "姓名" }}

  [[forms.fields]]
  name = "email"
  type = "email"
  label = {{ en = "Email", zh = "电子邮箱" }}
  required = true

  [[forms.fields]]
  name = "message"
  type = "textarea"
  label = {{ en = "Message", zh = "留言" }}
  required = true

[[forms]]
slug = "careers"
title = "Job application"
recipients = ["Hiring <hiring@example.com>"]
allowed_origins = ["{JOBS}"]

  [[forms.fields]]
  name = "email"
  type = "email"
  label = "Email"
  required = true

[[forms]]
slug = "private"
title = "Private"
recipients = ["Owner <owner@example.com>"]

  [[forms.fields]]
  name = "email"
  type = "email"
  label = "Email"
  required = true

  [[forms.fields]]
  name = "message"
  type = "textarea"
  label = "Message"
  required = true
"""
VISITOR = "grace@example.com"
VISIT = {"name": "Grace Hopper", "email": VISITOR, "message": "Hello from your other site."}
REFUSED_SENTENCE = "This form does not take submissions from {}, so nothing was sent."
HIDDEN_INPUT = re.compile(r'<input[^>]*\bname="([^"]+)"[^>]*\bvalue="([^"]*)"')
# The headers every answer keeps, framable or not.
KEPT_HEADERS = {"X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "strict-origin-when-cross-origin"}


def embedding_app(make_app: Callable[..., Flask], tmp_path: Path, **settings: Any) -> Flask:
    """An app (no delivery thread: the mails stay queued) serving FORMS."""
    path = write_forms(tmp_path / "site", FORMS)
    return make_app(deliver=False, CONTACT_FORMS_FILE=str(path), **settings)


def post_from(client: FlaskClient, origin: str | None, fields: Mapping[str, str] = VISIT,
              path: str = "/f/contact", json: bool = False, multipart: bool = False,
              **headers: str) -> TestResponse:
    """POST `fields` as a page on `origin` would (None: the browser names no origin)."""
    sent = {"Accept": "application/json" if json else "text/html", **headers}
    if origin is not None:
        sent["Origin"] = origin
    return client.post(path, data=dict(fields), headers=sent,
                       content_type="multipart/form-data" if multipart else None)


def stored(app: Flask) -> list[Submission]:
    """Every stored submission, oldest first, detached."""
    with app.app_context():
        found = list(db.session.scalars(select(Submission).order_by(Submission.created_at)))
        db.session.expunge_all()
        return found


def only_submission(app: Flask) -> Submission:
    """The one stored submission."""
    [submission] = stored(app)
    return submission


def mail_kinds(app: Flask, submission_id: str) -> list[str]:
    """The kinds of the mails queued for a submission."""
    return [mail.kind for mail in mails_of(app, submission_id)]


def nothing_stored(app: Flask) -> bool:
    """No submission, no mail."""
    return counts(app) == {"submission": 0, "outbox": 0, "delivery_attempt": 0}


def location(response: TestResponse) -> str:
    """Where a redirect leads: the path and query for this site, the whole URL elsewhere."""
    parts = urlsplit(response.headers["Location"])
    if parts.netloc in ("", "localhost"):
        return parts.path + (f"?{parts.query}" if parts.query else "")
    return response.headers["Location"]


def fresh_token(client: FlaskClient, slug: str = "contact") -> str:
    """A token from `GET /f/<slug>/token`, as the embed script fetches it."""
    answer = client.get(f"/f/{slug}/token", headers={"Origin": HOST_PAGE})
    assert answer.status_code == 200
    return str(answer.get_json()["token"])


def hidden_inputs(page: str) -> dict[str, str]:
    """The page's inputs that have a value, by name (unescaped)."""
    return {name: html.unescape(value) for name, value in HIDDEN_INPUT.findall(page)}


def directives(policy: str) -> dict[str, str]:
    """A Content-Security-Policy's directives, by name."""
    return dict(part.strip().partition(" ")[::2] for part in policy.split(";"))


def assert_kept_headers(response: TestResponse) -> None:
    """nosniff and the referrer policy, on every answer of every way in."""
    for name, value in KEPT_HEADERS.items():
        assert response.headers[name] == value


def assert_framable_by(response: TestResponse, origins: str) -> None:
    """Framable by `origins` alone, with the rest of the site's policy and headers kept."""
    found = directives(response.headers["Content-Security-Policy"])
    assert found.pop("frame-ancestors") == origins
    expected = directives(CONTENT_SECURITY_POLICY)
    expected.pop("frame-ancestors")
    assert found == expected
    assert "X-Frame-Options" not in response.headers
    assert_kept_headers(response)


def assert_not_framable(response: TestResponse) -> None:
    """Nobody may frame it: `frame-ancestors 'none'` and, for older browsers, DENY."""
    assert directives(response.headers["Content-Security-Policy"])["frame-ancestors"] == "'none'"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert_kept_headers(response)


# -- A plain HTML form on another site ----------------------------------------------------------

@pytest.mark.parametrize(("origin", "headers", "next_url"), [
    (HOST_PAGE, {}, f"{HOST_PAGE}/thanks.html"),
    (SHOP, {}, f"{SHOP}/done?from=contact#top"),
    (None, {"Referer": "http://127.0.0.1:8001/contact.html"}, "http://127.0.0.1:8001/sent"),
], ids=["exact", "wildcard", "referer"])
@pytest.mark.parametrize("multipart", [False, True], ids=["urlencoded", "multipart"])
def test_a_plain_form_on_an_allowed_origin_is_kept_as_suspect(make_app, tmp_path, origin,
                                                              headers, next_url, multipart):
    """No token, no CSRF cookie: accepted, suspect (`embedded_no_proof`), 303 to `_next`; the
    owner's mail is queued, the visitor's thank-you is not."""
    app = embedding_app(make_app, tmp_path)
    answer = post_from(app.test_client(), origin, {**VISIT, "_next": next_url},
                       multipart=multipart, **headers)
    assert answer.status_code == 303
    assert answer.headers["Location"] == next_url
    assert_kept_headers(answer)
    submission = only_submission(app)
    assert (submission.verdict, submission.verdict_reasons) == ("suspect", "embedded_no_proof")
    assert (submission.form_slug, submission.email, submission.message) == (
        "contact", VISITOR, VISIT["message"])
    assert "_next" not in {answer["name"] for answer in submission.answers or []}
    assert mail_kinds(app, submission.id) == [MailKind.OWNER]


def test_a_plain_form_is_suspect_whatever_the_other_layers_say(make_app, tmp_path):
    """With the time trap and the proof of work on, a plain form has neither: still suspect
    (never spam for that alone), every reason kept."""
    app = embedding_app(make_app, tmp_path, **LAYERS_ON)
    assert post_from(app.test_client(), HOST_PAGE).status_code == 303
    submission = only_submission(app)
    assert submission.verdict == "suspect"
    assert set(submission.verdict_reasons.split("\n")) == {
        "embedded_no_proof", "no_form_time", "no_proof"}


def test_a_plain_form_asking_for_json_gets_the_id(make_app, tmp_path):
    """A script on an allowed origin posting without a token: 202 with the id, still suspect."""
    app = embedding_app(make_app, tmp_path)
    answer = post_from(app.test_client(), HOST_PAGE, json=True)
    assert answer.status_code == 202
    submission = only_submission(app)
    assert answer.get_json() == {"id": submission.id, "status": "queued"}
    assert submission.verdict_reasons == "embedded_no_proof"


@pytest.mark.parametrize("next_url", [
    "//evil.example", "//evil.example/thanks", "https://evil.example/thanks",
    "javascript:alert(1)", "JavaScript:alert(document.cookie)", "data:text/html,hello",
    "/\\evil.example", "\\\\evil.example", "https:\\\\evil.example",
    f"{HOST_PAGE}\\@evil.example", f"{HOST_PAGE}@evil.example/", f"{HOST_PAGE}.evil.example/",
    "http://www.example.com/thanks", f"{HOST_PAGE}:8443/thanks", "https://example.org/",
    "https://evilexample.org/", "/admin", "thanks.html", " https://www.example.com/",
], ids=repr)
def test_a_next_off_the_allowed_origins_leads_to_the_thanks_page(make_app, tmp_path, next_url):
    """Never an open redirect: a `_next` that is not a URL on an allowed origin is ignored."""
    app = embedding_app(make_app, tmp_path)
    answer = post_from(app.test_client(), HOST_PAGE, {**VISIT, "_next": next_url})
    assert answer.status_code == 303
    assert location(answer) == "/thanks"
    assert only_submission(app).verdict_reasons == "embedded_no_proof"


def test_the_thanks_page_names_a_form_that_is_not_the_first(make_app, tmp_path):
    """A plain form of another form without `_next` is thanked on /thanks?form=<slug>."""
    app = embedding_app(make_app, tmp_path)
    answer = post_from(app.test_client(), JOBS, {"email": VISITOR}, path="/f/careers")
    assert answer.status_code == 303
    assert location(answer) == "/thanks?form=careers"
    assert only_submission(app).form_slug == "careers"


@pytest.mark.parametrize(("origin", "headers", "named"), [
    (EVIL, {}, EVIL),
    (None, {"Referer": f"{EVIL}/contact.html"}, EVIL),
    ("http://www.example.com", {}, "http://www.example.com"),
    (f"{HOST_PAGE}:8443", {}, f"{HOST_PAGE}:8443"),
    ("https://example.org", {}, "https://example.org"),
    ("https://evilexample.org", {}, "https://evilexample.org"),
    (JOBS, {}, JOBS),  # allowed by another form, not this one
    (EVIL, {"Referer": f"{HOST_PAGE}/page"}, EVIL),  # Origin wins over Referer
], ids=["foreign", "foreign-referer", "scheme", "port", "bare-domain", "lookalike",
        "other-form", "origin-first"])
@pytest.mark.parametrize("json", [False, True], ids=["html", "json"])
def test_another_site_is_refused_and_nothing_is_stored(make_app, tmp_path, origin, headers,
                                                       named, json):
    """403 in one sentence naming the site; no submission, no mail."""
    app = embedding_app(make_app, tmp_path)
    answer = post_from(app.test_client(), origin, {**VISIT, "_next": f"{HOST_PAGE}/x"},
                       json=json, **headers)
    assert answer.status_code == 403
    assert_kept_headers(answer)
    sentence = REFUSED_SENTENCE.format(named)
    if json:
        assert answer.get_json() == {"error": sentence}
    else:
        assert sentence in html.unescape(answer.get_data(as_text=True))
    assert nothing_stored(app)


def test_another_site_is_refused_even_with_a_valid_token(make_app, tmp_path):
    """The origin is judged first: a token fetched by another site's server does not help."""
    app = embedding_app(make_app, tmp_path)
    client = app.test_client()
    answer = post_from(client, EVIL, {**VISIT, "_token": fresh_token(client)}, json=True)
    assert answer.status_code == 403
    assert nothing_stored(app)


@pytest.mark.parametrize(("origin", "headers"), [
    ("null", {}),
    (None, {}),
    ("null", {"Referer": f"{EVIL}/page"}),  # "null" says the browser hides where it was
], ids=["origin-null", "no-origin", "null-with-referer"])
def test_a_plain_form_whose_browser_hides_its_origin_is_kept_as_suspect(make_app, tmp_path,
                                                                        origin, headers):
    """Privacy settings, a file:// page: accepted as suspect (`no_origin`), owner mail only."""
    app = embedding_app(make_app, tmp_path)
    answer = post_from(app.test_client(), origin, {**VISIT, "_next": f"{HOST_PAGE}/sent"},
                       **headers)
    assert answer.status_code == 303
    assert answer.headers["Location"] == f"{HOST_PAGE}/sent"
    submission = only_submission(app)
    assert (submission.verdict, submission.verdict_reasons) == ("suspect", "no_origin")
    assert mail_kinds(app, submission.id) == [MailKind.OWNER]


# -- The site's own page: its CSRF check holds --------------------------------------------------

@pytest.mark.parametrize(("origin", "status"), [
    (None, 400), ("null", 400), (OWN, 400), (HOST_PAGE, 403), (EVIL, 403),
], ids=["no-origin", "null", "own", "an-origin-of-another-form", "foreign"])
def test_a_form_without_allowed_origins_takes_nothing_without_its_csrf_token(
        make_app, tmp_path, origin, status):
    """No allowed_origins: a POST without the CSRF token fails as before (400), and another
    site is told it is refused (403); nothing is stored."""
    app = embedding_app(make_app, tmp_path)
    answer = post_from(app.test_client(), origin, path="/f/private")
    assert answer.status_code == status
    assert nothing_stored(app)


@pytest.mark.parametrize("json", [False, True], ids=["html", "json"])
def test_this_sites_own_origin_needs_its_csrf_token_on_every_form(make_app, tmp_path, json):
    """Saying `Origin: <this site>` without a CSRF token is no way in, even on a form that
    takes other sites' posts."""
    app = embedding_app(make_app, tmp_path)
    answer = post_from(app.test_client(), OWN, json=json)
    assert answer.status_code == 400
    if json:
        assert list(answer.get_json()["errors"]) == ["csrf_token"]
    assert nothing_stored(app)


def test_a_hidden_origin_with_a_wrong_csrf_token_is_refused(make_app, tmp_path):
    """A post carrying a CSRF token is the site's own page: the token is checked, not skipped."""
    app = embedding_app(make_app, tmp_path)
    answer = post_from(app.test_client(), "null", {**VISIT, "csrf_token": "forged"})
    assert answer.status_code == 400
    assert nothing_stored(app)


@pytest.mark.parametrize("path", ["/f/contact", "/f/private"])
def test_this_sites_own_page_still_posts_with_its_csrf_token(make_app, tmp_path, path):
    """The site's own page, unchanged: its CSRF token and key, a normal verdict (ham here)."""
    app = embedding_app(make_app, tmp_path)
    answer = post_declared(app.test_client(), path, VISIT)
    assert answer.status_code == 202, answer.get_json()
    submission = only_submission(app)
    assert (submission.verdict, submission.verdict_reasons) == ("ham", "")
    assert mail_kinds(app, submission.id) == [MailKind.OWNER, MailKind.THANK_YOU]


# -- A validation error on a plain cross-origin post --------------------------------------------

def test_a_plain_form_with_errors_comes_back_on_this_sites_page(make_app, tmp_path):
    """422: the site's own page with the inputs kept, `_next` kept, and a link back to it."""
    app = embedding_app(make_app, tmp_path)
    next_url = f"{HOST_PAGE}/thanks.html?a=1&b=2"
    answer = post_from(app.test_client(), HOST_PAGE,
                       {"name": "Grace <Hopper>", "email": "not an address", "message": "",
                        "_next": next_url})
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    inputs = hidden_inputs(page)
    assert inputs["_next"] == next_url
    assert (inputs["name"], inputs["email"]) == ("Grace <Hopper>", "not an address")
    assert f'<a href="{html.escape(next_url)}">Back to the page you came from</a>' in page
    assert 'id="error-summary"' in page and "Enter a valid email address." in page
    assert nothing_stored(app)


def test_without_next_the_link_back_is_the_referer_of_that_origin(make_app, tmp_path):
    """No `_next`: the page the form was on (its Referer), when it is the posting origin."""
    app = embedding_app(make_app, tmp_path)
    referer = f"{HOST_PAGE}/about/contact.html"
    answer = post_from(app.test_client(), HOST_PAGE, {**VISIT, "email": "nope"},
                       Referer=referer)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert f'<a href="{referer}">Back to the page you came from</a>' in page
    assert 'name="_next"' not in page


@pytest.mark.parametrize(("fields", "headers"), [
    ({"_next": f"{EVIL}/x"}, {"Referer": f"{SHOP}/page"}),
    ({"_next": "javascript:alert(1)"}, {}),
], ids=["referer-of-another-origin", "refused-next"])
def test_no_link_back_to_a_page_that_is_not_the_posting_origin(make_app, tmp_path, fields, headers):
    """A refused `_next` is neither kept nor linked; a Referer of another origin is not linked."""
    app = embedding_app(make_app, tmp_path)
    answer = post_from(app.test_client(), HOST_PAGE, {**VISIT, "email": "nope", **fields},
                       **headers)
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    assert "Back to the page you came from" not in page
    assert 'name="_next"' not in page
    assert "evil.example" not in page and "javascript:" not in page


def test_the_corrected_form_sends_from_this_sites_page(make_app, tmp_path):
    """The visitor fixes the field on this site's page and sends it: accepted, on to `_next`."""
    app = embedding_app(make_app, tmp_path)
    client = app.test_client()
    next_url = f"{HOST_PAGE}/thanks.html"
    first = post_from(client, HOST_PAGE, {**VISIT, "email": "nope", "_next": next_url})
    assert first.status_code == 422
    again = {**hidden_inputs(first.get_data(as_text=True)), "email": VISITOR,
             "message": VISIT["message"]}
    answer = post_from(client, OWN, again, Referer=f"{OWN}/f/contact")
    assert answer.status_code == 303, answer.get_data(as_text=True)[:2000]
    assert answer.headers["Location"] == next_url
    assert only_submission(app).email == VISITOR


# -- The embed script: token, fragment, JSON answers --------------------------------------------

def test_the_token_is_fresh_for_each_visitor_and_never_cached(make_app, tmp_path):
    """`GET /f/<slug>/token`: a token for that form, `no-store`, no cookie."""
    app = embedding_app(make_app, tmp_path)
    client = app.test_client()
    answers = [client.get("/f/contact/token", headers={"Origin": HOST_PAGE}) for _ in range(2)]
    for answer in answers:
        assert answer.status_code == 200
        assert answer.headers["Cache-Control"] == "no-store"
        assert "Set-Cookie" not in answer.headers
    first, second = (answer.get_json()["token"] for answer in answers)
    assert first != second
    with app.app_context():
        assert tokens.verify(first, "contact") is not None
        assert tokens.verify(first, "careers") is None
    assert client.get("/f/nowhere/token").status_code == 404


def test_a_token_from_an_allowed_origin_gets_the_json_answer_and_a_normal_verdict(make_app,
                                                                                  tmp_path):
    """202 with the id; judged as the site's own page is (ham here), not as a plain form; the
    token's nonce is the submission key."""
    app = embedding_app(make_app, tmp_path)
    client = app.test_client()
    token = fresh_token(client)
    answer = post_from(client, SHOP, {**VISIT, "_token": token}, json=True)
    assert answer.status_code == 202, answer.get_json()
    submission = only_submission(app)
    assert answer.get_json() == {"id": submission.id, "status": "queued"}
    assert (submission.verdict, submission.verdict_reasons) == ("ham", "")
    with app.app_context():
        verified = tokens.verify(token, "contact")
    assert verified is not None and submission.submission_key == verified.nonce
    assert mail_kinds(app, submission.id) == [MailKind.OWNER, MailKind.THANK_YOU]


def test_the_same_token_twice_stores_one_submission(make_app, tmp_path):
    """A token is used once: its second POST answers like the first and stores nothing new."""
    app = embedding_app(make_app, tmp_path)
    client = app.test_client()
    token = fresh_token(client)
    first = post_from(client, HOST_PAGE, {**VISIT, "_token": token}, json=True)
    again = post_from(client, HOST_PAGE, {**VISIT, "_token": token, "message": "Again."},
                      json=True)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.get_json() == first.get_json()
    submission = only_submission(app)
    assert submission.message == VISIT["message"]
    assert len(mails_of(app, submission.id)) == 2


def test_the_same_token_twice_without_javascript_redirects_alike(make_app, tmp_path):
    """An HTML form sent twice with one token (a double click): the same 303, one row."""
    app = embedding_app(make_app, tmp_path)
    client = app.test_client()
    fields = {**VISIT, "_token": fresh_token(client), "_next": f"{HOST_PAGE}/sent"}
    answers = [post_from(client, HOST_PAGE, fields) for _ in range(2)]
    assert [answer.status_code for answer in answers] == [303, 303]
    assert [answer.headers["Location"] for answer in answers] == [f"{HOST_PAGE}/sent"] * 2
    assert len(stored(app)) == 1


def test_a_token_survives_a_validation_error(make_app, tmp_path):
    """422 with the errors by field; the same token then sends the corrected message."""
    app = embedding_app(make_app, tmp_path)
    client = app.test_client()
    token = fresh_token(client)
    wrong = post_from(client, HOST_PAGE, {**VISIT, "email": "nope", "_token": token}, json=True)
    assert wrong.status_code == 422
    assert list(wrong.get_json()["errors"]) == ["email"]
    assert wrong.headers["Access-Control-Allow-Origin"] == HOST_PAGE  # the script reads them
    assert nothing_stored(app)
    right = post_from(client, HOST_PAGE, {**VISIT, "_token": token}, json=True)
    assert right.status_code == 202
    assert only_submission(app).verdict == "ham"


@pytest.mark.parametrize("kind", ["another-form", "tampered", "garbage"])
@pytest.mark.parametrize("json", [False, True], ids=["html", "json"])
def test_a_token_that_is_not_this_forms_is_refused(make_app, tmp_path, kind, json):
    """400 (the form's security token), nothing stored: another form's token, an altered one."""
    app = embedding_app(make_app, tmp_path)
    client = app.test_client()
    token = {"another-form": fresh_token(client, "careers"),
             "tampered": fresh_token(client)[:-2] + "xx",
             "garbage": "not-a-token"}[kind]
    answer = post_from(client, HOST_PAGE, {**VISIT, "_token": token}, json=json)
    assert answer.status_code == 400
    assert answer.headers["Access-Control-Allow-Origin"] == HOST_PAGE  # the script reads it
    if json:
        assert list(answer.get_json()["errors"]) == ["csrf_token"]
    else:
        assert "nothing was sent" in answer.get_data(as_text=True)
    assert nothing_stored(app)


def test_a_token_carries_the_time_trap_and_the_proof_of_work_is_judged(make_app, tmp_path):
    """Normal verdicts: the token's time is the time trap's (a post at once is too fast) and
    the proof of work counts (none: `no_proof`)."""
    app = embedding_app(make_app, tmp_path, CONTACT_MIN_FILL_SECONDS=3,
                        CONTACT_PROOF_OF_WORK="altcha")
    client = app.test_client()
    at_once = post_from(client, HOST_PAGE, {**VISIT, "_token": fresh_token(client)}, json=True)
    assert at_once.status_code == 202
    [submission] = stored(app)
    assert submission.verdict == "spam"
    assert set(submission.verdict_reasons.split("\n")) == {"too_fast", "no_proof"}


@pytest.mark.parametrize(("proof", "verdict", "reasons"), [
    (True, "ham", ""), (False, "suspect", "no_proof"),
], ids=["solved", "none"])
def test_a_token_with_a_solved_proof_of_work_is_ham(make_app, tmp_path, proof, verdict,
                                                    reasons):
    """With the token, the embedded form is judged like the site's own page."""
    app = embedding_app(make_app, tmp_path, CONTACT_PROOF_OF_WORK="altcha")
    client = app.test_client()
    fields = {**VISIT, "_token": fresh_token(client)}
    if proof:
        with app.app_context():
            fields["altcha"] = fresh_proof()
    assert post_from(client, SHOP, fields, json=True).status_code == 202
    [submission] = stored(app)
    assert (submission.verdict, submission.verdict_reasons) == (verdict, reasons)


def test_the_fragment_is_the_form_alone_with_absolute_addresses(make_app, tmp_path):
    """The form to put in another page: its addresses name this site; an empty `_token` for
    the script to fill; no CSRF token, no cookie, no cache."""
    app = embedding_app(make_app, tmp_path)
    answer = app.test_client().get("/f/contact/fragment", headers={"Origin": HOST_PAGE})
    assert answer.status_code == 200
    assert answer.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in answer.headers
    page = answer.get_data(as_text=True)
    assert page.lstrip().startswith('<div class="contact-site-embed" lang="en">')
    assert "<html" not in page and "<body" not in page
    # The language travels in the address: no cookie keeps it on another site.
    assert f'action="{OWN}/f/contact?lang=en"' in page
    assert f'data-thanks-url="{OWN}/thanks"' in page
    assert f'data-altcha-url="{OWN}/altcha"' in page
    assert '<input type="hidden" name="_token" value="">' in page
    assert "csrf_token" not in page
    assert 'id="contact-form"' in page and 'id="error-summary"' in page


def test_the_fragment_of_another_form_and_language(make_app, tmp_path):
    """`?lang=zh` gives the form's words in Chinese; another form's addresses name it."""
    app = embedding_app(make_app, tmp_path)
    client = app.test_client()
    chinese = client.get("/f/contact/fragment?lang=zh").get_data(as_text=True)
    assert re.search(r'<div class="contact-site-embed" lang="zh[^"]*">', chinese)
    assert "姓名" in chinese and "留言" in chinese
    careers = client.get("/f/careers/fragment").get_data(as_text=True)
    assert f'action="{OWN}/f/careers?lang=zh"' in careers
    assert f'data-thanks-url="{OWN}/thanks?form=careers"' in careers
    assert client.get("/f/nowhere/fragment").status_code == 404


# -- CORS ---------------------------------------------------------------------------------------

def cors_request(client: FlaskClient, method: str, path: str, origin: str) -> TestResponse:
    """A cross-origin request as the embed script makes it."""
    headers = {"Origin": origin, "Accept": "application/json"}
    if method == "POST":
        return client.post(path, data={**VISIT, "_token": fresh_token(client)}, headers=headers)
    return client.open(path, method=method, headers=headers)


CORS_CALLS = [("GET", "/f/contact/token"), ("GET", "/f/contact/fragment"),
              ("POST", "/f/contact"), ("GET", "/altcha")]


@pytest.mark.parametrize(("method", "path"), CORS_CALLS, ids=[p for _m, p in CORS_CALLS])
@pytest.mark.parametrize("origin", [HOST_PAGE, SHOP, "http://127.0.0.1:8001"])
def test_an_allowed_origin_is_named_exactly(make_app, tmp_path, method, path, origin):
    """`Access-Control-Allow-Origin: <that origin>` (never `*`, no credentials), `Vary: Origin`."""
    app = embedding_app(make_app, tmp_path, CONTACT_PROOF_OF_WORK="altcha")
    answer = cors_request(app.test_client(), method, path, origin)
    assert answer.status_code in (200, 202)
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    assert "Origin" in answer.vary
    assert "Access-Control-Allow-Credentials" not in answer.headers


@pytest.mark.parametrize(("method", "path"), CORS_CALLS, ids=[p for _m, p in CORS_CALLS])
@pytest.mark.parametrize("origin", [EVIL, "https://example.org", "http://www.example.com",
                                    "null"])
def test_another_origin_is_not_named(make_app, tmp_path, method, path, origin):
    """No CORS header for an origin the form does not list; `Vary: Origin` all the same."""
    app = embedding_app(make_app, tmp_path, CONTACT_PROOF_OF_WORK="altcha")
    answer = cors_request(app.test_client(), method, path, origin)
    assert not any(name.startswith("Access-Control-") for name in answer.headers.keys())
    assert "Origin" in answer.vary


def test_the_challenge_answers_an_origin_of_any_form(make_app, tmp_path):
    """/altcha serves every form: an origin of the careers form is named there, and not on
    the contact form's token."""
    client = embedding_app(make_app, tmp_path, CONTACT_PROOF_OF_WORK="altcha").test_client()
    assert cors_request(client, "GET", "/altcha", JOBS).headers.get(
        "Access-Control-Allow-Origin") == JOBS
    assert "Access-Control-Allow-Origin" not in cors_request(
        client, "GET", "/f/contact/token", JOBS).headers
    assert cors_request(client, "GET", "/f/careers/token", JOBS).headers.get(
        "Access-Control-Allow-Origin") == JOBS


def preflight(client: FlaskClient, path: str, origin: str) -> TestResponse:
    """The browser's OPTIONS before a POST with an X-Requested-With header."""
    return client.options(path, headers={
        "Origin": origin, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "accept, x-requested-with"})


@pytest.mark.parametrize(("path", "origin"), [
    ("/", SHOP), ("/f/contact", SHOP), ("/f/careers", JOBS), ("/f/contact/token", SHOP),
    ("/f/contact/fragment", HOST_PAGE),
], ids=lambda value: value if value.startswith("/") else None)
def test_a_preflight_from_an_allowed_origin_is_answered(make_app, tmp_path, path, origin):
    """GET and POST, the headers the script sends, cached ten minutes; the exact origin (the
    form's POST as well: its address is its page's)."""
    app = embedding_app(make_app, tmp_path)
    answer = preflight(app.test_client(), path, origin)
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Allow-Origin"] == origin
    assert answer.headers["Access-Control-Allow-Methods"] == "GET, POST"
    assert answer.headers["Access-Control-Allow-Headers"] == "Accept, X-Requested-With"
    assert answer.headers["Access-Control-Max-Age"] == "600"
    assert "Origin" in answer.vary
    assert nothing_stored(app)


@pytest.mark.parametrize("path", ["/", "/f/contact", "/f/contact/token"])
@pytest.mark.parametrize("origin", [EVIL, JOBS, "null"])
def test_a_preflight_from_another_origin_gets_no_cors_headers(make_app, tmp_path, path, origin):
    """The browser then refuses to send the POST at all."""
    app = embedding_app(make_app, tmp_path)
    answer = preflight(app.test_client(), path, origin)
    assert not any(name.startswith("Access-Control-") for name in answer.headers.keys())


@pytest.mark.parametrize("path", ["/", "/f/contact", "/f/contact/embed", "/thanks",
                                  "/healthz"])
def test_pages_that_are_not_for_scripts_get_no_cors_headers(make_app, tmp_path, path):
    """Only the token, the fragment, the form's POST and the challenge are readable elsewhere."""
    app = embedding_app(make_app, tmp_path)
    answer = app.test_client().get(path, headers={"Origin": HOST_PAGE})
    assert "Access-Control-Allow-Origin" not in answer.headers


# -- The iframe ---------------------------------------------------------------------------------

FRAMERS = " ".join(ALLOWED)


def test_the_embed_page_may_be_framed_by_the_allowed_origins_alone(make_app, tmp_path):
    """`frame-ancestors <allowed origins>`, no X-Frame-Options, the other headers kept; a
    token in the form and no cookie, so a browser blocking third-party cookies sends it."""
    app = embedding_app(make_app, tmp_path)
    answer = app.test_client().get("/f/contact/embed")
    assert answer.status_code == 200
    assert_framable_by(answer, FRAMERS)
    assert answer.headers["Cache-Control"] == "no-store"
    assert "Set-Cookie" not in answer.headers
    inputs = hidden_inputs(answer.get_data(as_text=True))
    assert "csrf_token" not in inputs
    with app.app_context():
        assert tokens.verify(inputs["_token"], "contact") is not None
    assert app.test_client().get("/f/nowhere/embed").status_code == 404


def test_the_iframe_script_goes_on_to_the_framable_thanks_page(make_app, tmp_path):
    """With JavaScript in the frame, a sent form goes to `data-thanks-url`: the thanks page
    that may be framed."""
    app = embedding_app(make_app, tmp_path)
    page = app.test_client().get("/f/contact/embed").get_data(as_text=True)
    thanks = re.search(r'data-thanks-url="([^"]*)"', page)
    assert thanks is not None
    assert html.unescape(thanks.group(1)) == "/thanks?form=contact&embed=1"


@pytest.mark.parametrize(("given", "parent"), [
    (HOST_PAGE, HOST_PAGE), (f"{SHOP}/some/page", SHOP), (EVIL, None), ("null", None),
    ("javascript:alert(1)", None),
], ids=["exact", "wildcard-with-path", "foreign", "null", "javascript"])
def test_the_embed_page_tells_its_height_to_an_allowed_parent_only(make_app, tmp_path, given,
                                                                    parent):
    """`?origin=` on an allowed origin: frame.js with that origin and a `_parent` field;
    anything else: neither."""
    app = embedding_app(make_app, tmp_path)
    page = app.test_client().get("/f/contact/embed", query_string={"origin": given}).get_data(
        as_text=True)
    if parent is None:
        assert "frame.js" not in page and 'name="_parent"' not in page
        assert html.escape(given) not in page
    else:
        assert f'data-parent-origin="{parent}"' in page
        assert hidden_inputs(page)["_parent"] == parent


def test_the_iframe_form_sends_without_javascript(make_app, tmp_path):
    """Posted from the frame (this site, with its token): 303 to the framable thanks page,
    judged normally."""
    app = embedding_app(make_app, tmp_path)
    client = app.test_client()
    inputs = hidden_inputs(client.get("/f/contact/embed").get_data(as_text=True))
    answer = post_from(client, OWN, {**inputs, **VISIT})
    assert answer.status_code == 303
    assert location(answer) == "/thanks?form=contact&embed=1"
    submission = only_submission(app)
    assert (submission.verdict, submission.verdict_reasons) == ("ham", "")
    thanks = client.get(location(answer))
    assert thanks.status_code == 200
    assert_framable_by(thanks, FRAMERS)


def test_the_iframe_form_with_errors_stays_framable(make_app, tmp_path):
    """422 in the frame: the embed page again, its token and parent kept, still framable."""
    app = embedding_app(make_app, tmp_path)
    client = app.test_client()
    page = client.get("/f/contact/embed", query_string={"origin": SHOP}).get_data(as_text=True)
    inputs = hidden_inputs(page)
    answer = post_from(client, OWN, {**inputs, **VISIT, "email": "nope"})
    assert answer.status_code == 422
    assert_framable_by(answer, FRAMERS)
    again = hidden_inputs(answer.get_data(as_text=True))
    assert (again["_token"], again["_parent"]) == (inputs["_token"], SHOP)
    assert nothing_stored(app)


@pytest.mark.parametrize("path", ["/", "/f/contact", "/f/careers", "/f/private", "/thanks",
                                  "/thanks?form=careers", "/f/contact/token",
                                  "/f/contact/fragment"])
def test_this_sites_own_pages_may_not_be_framed(make_app, tmp_path, path):
    """Everything but the embed pages keeps `frame-ancestors 'none'` and DENY."""
    app = embedding_app(make_app, tmp_path)
    answer = app.test_client().get(path)
    assert answer.status_code == 200
    assert_not_framable(answer)


def test_the_thanks_page_in_a_frame_is_framable_by_that_forms_origins(make_app, tmp_path):
    """`/thanks?form=<slug>&embed=1`: the form's allowed origins, not another form's."""
    app = embedding_app(make_app, tmp_path)
    client = app.test_client()
    assert_framable_by(client.get("/thanks?form=contact&embed=1"), FRAMERS)
    assert_framable_by(client.get("/thanks?form=careers&embed=1"), JOBS)


@pytest.mark.parametrize("path", ["/f/private/embed", "/thanks?form=private&embed=1"])
def test_a_form_without_allowed_origins_may_not_be_framed(make_app, tmp_path, path):
    """Nobody listed, nobody may frame it: the same headers as the site's own pages."""
    app = embedding_app(make_app, tmp_path)
    assert_not_framable(app.test_client().get(path))
