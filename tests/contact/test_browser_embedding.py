"""The form on another site's page, in a real Chromium that blocks third-party cookies.

The contact site is served on http://127.0.0.1:<port>; the other site's page is
docs/embed-example.html, served on http://localhost:<port> (another site for the
browser), under the Content-Security-Policy the example documents. A third origin,
http://localhost:<another port>, is one the form does not list. Each way is tried: the
plain HTML form (no JavaScript), the embed script (the form in the page) and the iframe.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    Site,
    WatchedPage,
    assert_field_error,
    axe_violations,
    serve,
    visitor_email,
)
from support.forms_files import write_forms
from support.host_page import THANKS_PATH, HostPage
from support.settings import skip_or_fail
from support.smtp_server import SMTPTestServer
from support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

# The contact form as the site serves it by default, taking submissions from `{host}` only.
FORMS = """
[site]
name = "Example Ltd"

[[forms]]
slug = "contact"
title = {{ en = "Contact us", zh = "联系我们" }}
recipients = ["Sales <sales@example.com>", "Support <support@example.com>"]
allowed_origins = ["{host}"]

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
  name = "subject"
  type = "text"
  label = {{ en = "Subject", zh = "主题" }}

  [[forms.fields]]
  name = "message"
  type = "textarea"
  label = {{ en = "Message", zh = "留言" }}
  required = true

  [[forms.fields]]
  name = "attachment"
  type = "file"
  label = {{ en = "Attachment", zh = "附件" }}
"""
# The example page again, with the embed script asking for Chinese.
CHINESE_PAGE = "/zh.html"
# The example page again, its plain form naming a `_next` on a site the form does not list.
ELSEWHERE_PAGE = "/elsewhere.html"
ELSEWHERE = "https://elsewhere.example/thanks.html"
EXAMPLE_NEXT = "https://www.example.com/thanks.html"
VARIANTS = {
    CHINESE_PAGE: {'data-form="contact" defer': 'data-form="contact" data-lang="zh" defer'},
    ELSEWHERE_PAGE: {EXAMPLE_NEXT: ELSEWHERE},
}
# Han ideographs and CJK punctuation: Chinese text has them, English text has none.
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
# Inside the embed script's part of the host page.
EMBEDDED = ".contact-site-embed"
FRAME = "iframe.contact-site-frame"
# A cookie only a first-party (or cookie-allowing) context can keep.
COOKIE_PROBE = """() => {
  document.cookie = 'probe=1; SameSite=None; Secure; Path=/';
  return document.cookie;
}"""
ALTCHA_VALUE = f"{EMBEDDED} input[name=altcha]"
SOLVE_SECONDS = 30  # a bound against hanging, not a performance claim


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium as in every browser test, told to block third-party cookies as well."""
    if not CHROMIUM.exists():
        skip_or_fail(f"Chromium not found at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=[*CHROMIUM_ARGS, "--test-third-party-cookie-phaseout"])
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def host() -> Iterator[HostPage]:
    """The other site's page, on the origin the form allows."""
    with HostPage(variants=VARIANTS) as page:
        yield page


@pytest.fixture(scope="module")
def stranger() -> Iterator[HostPage]:
    """The same page on an origin the form does not list."""
    with HostPage() as page:
        yield page


@pytest.fixture(scope="module")
def form_site(tmp_path_factory: pytest.TempPathFactory, mail_server: SMTPTestServer,
              browser: Any, host: HostPage, stranger: HostPage) -> Iterator[Site]:
    """The contact site, its form allowing the host page's origin, proof of work on."""
    root = tmp_path_factory.mktemp("embedding")
    forms = write_forms(root / "forms", FORMS.format(host=host.origin))
    built, live = serve(root, mail_server, CONTACT_FORMS_FILE=str(forms),
                        CONTACT_PROOF_OF_WORK="altcha")
    host.site_url = stranger.site_url = built.url
    yield built
    live.stop()


def stored(site: Site, email: str) -> list[tuple[str, list[str], str]]:
    """(verdict, reasons, form) of each submission from `email`."""
    with site.app.app_context():
        rows = db.session.scalars(select(Submission).where(Submission.email == email)
                                  .order_by(Submission.id)).all()
        return [(row.verdict, row.verdict_reasons.split(), row.form_slug) for row in rows]


def assert_in_language(text: str, lang: str) -> None:
    """Chinese text holds Chinese characters; English text holds none."""
    assert text.strip(), "no text"
    assert bool(CJK.search(text)) == (lang == "zh"), f"not in {lang}: {text!r}"


def fill_plain_form(page: Any, email: str, subject: str) -> None:
    """The host page's own plain HTML form, filled as a visitor does."""
    page.select_option("#plain-recipient", "sales")
    page.fill("#plain-name", "Ada Lovelace")
    page.fill("#plain-email", email)
    page.fill("#plain-subject", subject)
    page.fill("#plain-message", "Hello from another site.")


def embedded_form(page: Any) -> Any:
    """The form the embed script put in the host page, once there and enhanced."""
    form = page.locator(f"{EMBEDDED} #contact-form[data-contact-site-enhanced]")
    form.wait_for(timeout=10_000)
    return form


def fill_embedded(page: Any, email: str, subject: str, name: str = "Ada Lovelace") -> None:
    """The embedded form filled as a visitor does."""
    page.select_option(f"{EMBEDDED} #recipient", "sales")
    page.fill(f"{EMBEDDED} #name", name)
    page.fill(f"{EMBEDDED} #email", email)
    page.fill(f"{EMBEDDED} #subject", subject)
    page.fill(f"{EMBEDDED} #message", "Hello from the embedded form.")


def solved_proof(page: Any, other_than: str = "") -> str:
    """The embedded form's proof of work, once altcha.js has put one in (a new one)."""
    deadline = time.monotonic() + SOLVE_SECONDS
    while time.monotonic() < deadline:
        value = page.locator(ALTCHA_VALUE).input_value()
        if value and value != other_than:
            return str(value)
        time.sleep(0.05)
    raise AssertionError(f"no proof of work in the form within {SOLVE_SECONDS}s")


def framed(page: Any, site: Site) -> Any:
    """The iframe's frame, once its form is there."""
    page.locator(FRAME).wait_for(timeout=10_000)
    frame = page.frame_locator(FRAME)
    frame.locator("#contact-form").wait_for(timeout=10_000)
    [found] = [f for f in page.frames if f.url.startswith(f"{site.url}/f/contact/embed")]
    return found


def frame_height(page: Any) -> int:
    """The iframe's height as the host page has it."""
    return int(page.locator(FRAME).get_attribute("height"))


def content_height(frame: Any) -> int:
    """The height of the page inside the frame, as frame.js measures it."""
    return int(frame.evaluate(
        "Math.ceil(document.documentElement.getBoundingClientRect().height)"))


def wait_for_frame_height(page: Any, frame: Any) -> int:
    """The frame's height once it matches its content."""
    wait_until(lambda: frame_height(page) == content_height(frame), 10,
               "the iframe sized to its content")
    return frame_height(page)


def test_this_browser_keeps_no_cookie_of_the_framed_site(
        form_site: Site, host: HostPage, open_page: Any) -> None:
    """Third-party cookies are blocked: neither the site's Set-Cookie nor a cookie written in
    its frame is kept, while the same site on its own keeps one."""
    watched = open_page()
    page = watched.page
    responses: list[Any] = []
    page.on("response", lambda r: responses.append(r) if r.url.startswith(form_site.url)
            else None)
    page.goto(f"{host.origin}/")
    frame = framed(page, form_site)

    # The frame's page chose its language with ?lang=: its answer sets the `lang` cookie.
    [frame_page] = [r for r in responses if r.url == frame.url]
    assert (frame_page.all_headers().get("set-cookie") or "").startswith("lang=")
    assert page.context.cookies(form_site.url) == []
    assert frame.evaluate(COOKIE_PROBE) == ""
    assert frame.evaluate("document.hasStorageAccess()") is False
    first_party = open_page().page
    first_party.goto(f"{form_site.url}/f/contact/embed")
    assert first_party.evaluate(COOKIE_PROBE) == "probe=1"


@pytest.mark.parametrize(("path", "lands_on"), [
    ("/", "host"), (ELSEWHERE_PAGE, "site")], ids=["allowed-next", "refused-next"])
def test_plain_form_without_javascript_is_stored_as_suspect(
        form_site: Site, host: HostPage, open_page: Any, path: str, lands_on: str) -> None:
    """No JavaScript: the plain form posts across origins, 303 to `_next` when it is on an
    allowed origin, else to the site's /thanks; stored, suspect for want of proof."""
    watched = open_page(javascript=False)
    page = watched.page
    page.goto(f"{host.origin}{path}")
    email = visitor_email()
    fill_plain_form(page, email, f"Plain {uuid.uuid4().hex[:6]}")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#plain-form button[type=submit]")
    page.wait_for_load_state()

    assert answer.value.status == 303
    assert answer.value.request.all_headers()["origin"] == host.origin
    if lands_on == "host":
        assert page.url == f"{host.origin}{THANKS_PATH}"
        assert page.locator("h1").inner_text() == "Thanks from the host page"
    else:
        assert page.url == f"{form_site.url}/thanks"
        assert page.locator("h1").inner_text() == "Thank you"
    [(verdict, reasons, form)] = stored(form_site, email)
    assert (verdict, form) == ("suspect", "contact")
    assert "embedded_no_proof" in reasons
    watched.assert_clean()


def test_plain_form_on_a_site_not_listed_is_refused(
        form_site: Site, stranger: HostPage, open_page: Any) -> None:
    """From an origin the form does not list: 403 in one sentence, nothing stored."""
    page = open_page(javascript=False).page
    page.goto(f"{stranger.origin}/")
    before = form_site.submissions()
    fill_plain_form(page, visitor_email(), "Not from here")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#plain-form button[type=submit]")
    page.wait_for_load_state()

    assert answer.value.status == 403
    assert (f"This form does not take submissions from {stranger.origin}, so nothing was "
            "sent.") in page.locator("body").inner_text()
    assert form_site.submissions() == before


@pytest.mark.parametrize(("path", "lang"), [("/", "en"), (CHINESE_PAGE, "zh")])
def test_embed_script_shows_errors_beside_the_fields(
        form_site: Site, host: HostPage, open_page: Any, path: str, lang: str) -> None:
    """The form is in the host page itself, in the language asked for; the page's own
    checks and the server's refusal show beside their fields, the page's title kept."""
    watched = open_page()
    page = watched.page
    page.goto(f"{host.origin}{path}")
    form = embedded_form(page)
    assert (page.locator(EMBEDDED).get_attribute("lang") or "").startswith(lang)
    # Right after the script tag, in the page's own document (no frame, no shadow root).
    assert page.locator(f"#script-title ~ script + {EMBEDDED}").count() == 1
    assert form.evaluate("form => form.getRootNode() === document")
    messages = json.loads(form.get_attribute("data-messages"))
    before = form_site.submissions()

    page.click(f"{EMBEDDED} #submit-button")
    page.wait_for_function("() => document.activeElement.id === 'error-summary'",
                           timeout=5_000)
    assert_field_error(page, "email", messages["required"]["email"])
    assert_in_language(page.locator("#email-error").inner_text(), lang)

    fill_embedded(page, visitor_email(), "Hidden", name="Ada\u200bLovelace")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click(f"{EMBEDDED} #submit-button")
    assert answer.value.status == 422
    page.locator("#name-error").wait_for(state="visible")
    assert_field_error(page, "name", "")
    assert_in_language(page.locator("#name-error").inner_text(), lang)
    assert page.locator("#email").get_attribute("aria-invalid") is None
    assert page.url == f"{host.origin}{path}"
    assert page.title() == "Write to us – Example Ltd"
    assert form_site.submissions() == before
    assert axe_violations(page) == []
    watched.assert_clean()


def test_embed_script_sends_in_place_with_proof_of_work(
        form_site: Site, host: HostPage, open_page: Any) -> None:
    """Solved proof of work, no cookie: 202, thanks said in place, stored as ham; a second
    message goes with a new token and is stored too."""
    watched = open_page()
    page = watched.page
    page.goto(f"{host.origin}/")
    form = embedded_form(page)
    messages = json.loads(form.get_attribute("data-messages"))
    email = visitor_email()
    ids = []
    proof = ""
    for attempt in range(2):
        proof = solved_proof(page, other_than=proof)
        fill_embedded(page, email, f"Embedded {attempt} {uuid.uuid4().hex[:6]}")
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.click(f"{EMBEDDED} #submit-button")
        assert answer.value.status == 202
        sent = answer.value.request.all_headers()
        assert "cookie" not in sent
        assert sent["origin"] == host.origin
        assert answer.value.headers["access-control-allow-origin"] == host.origin
        ids.append(answer.value.json()["id"])
        thanks = page.locator(f"{EMBEDDED} .contact-site-thanks")
        thanks.wait_for(state="visible")
        assert thanks.inner_text() == (messages.get("sent") or messages["upload_done"].replace(
            "{percent}", "100%"))
        page.wait_for_function(
            "() => document.activeElement.classList.contains('contact-site-thanks')")
        assert page.locator(f"{EMBEDDED} #email").input_value() == ""

    assert len(set(ids)) == 2
    assert page.url == f"{host.origin}/"
    assert stored(form_site, email) == [("ham", [], "contact"), ("ham", [], "contact")]
    watched.assert_clean()


def test_iframe_is_sized_to_its_form_by_messages_from_the_site(
        form_site: Site, host: HostPage, open_page: Any) -> None:
    """frame.js tells the host page the form's height, errors included; the host page takes
    whole, bounded heights from the site's frame only; axe finds nothing in the frame."""
    watched = open_page()
    page = watched.page
    page.goto(f"{host.origin}/")
    frame = framed(page, form_site)
    sized = wait_for_frame_height(page, frame)
    assert sized != 900  # the height embed.js gives the frame until it is told

    frame.click("#submit-button")
    frame.wait_for_function("() => document.activeElement.id === 'error-summary'")
    with_errors = wait_for_frame_height(page, frame)
    assert with_errors > sized

    # Not from the site's frame, or not a whole number: ignored; too tall: bounded.
    page.evaluate("window.postMessage({type: 'contact-site:height', height: 321}, '*')")
    frame.evaluate("parent.postMessage({type: 'contact-site:height', height: 12.5}, '*')")
    page.wait_for_timeout(200)
    assert frame_height(page) == with_errors
    frame.evaluate("parent.postMessage({type: 'contact-site:height', height: 99999}, '*')")
    wait_until(lambda: frame_height(page) == 5000, 5, "the height bounded to 5000")
    assert axe_violations(frame) == []
    watched.assert_clean()


def test_iframe_sends_the_message(form_site: Site, host: HostPage, open_page: Any) -> None:
    """Sent from the iframe with its proof of work and the token the page holds (no cookie):
    stored as ham, and the thanks page shows inside the frame."""
    watched = open_page()
    page = watched.page
    page.goto(f"{host.origin}/")
    frame = framed(page, form_site)
    email = visitor_email()
    frame.select_option("#recipient", "sales")
    frame.fill("#email", email)
    frame.fill("#message", "Hello from the iframe.")
    wait_until(lambda: bool(frame.locator("input[name=altcha]").input_value()), SOLVE_SECONDS,
               "the proof of work in the frame")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        frame.click("#submit-button")
    assert answer.value.url.startswith(f"{form_site.url}/f/contact")
    assert answer.value.status == 202
    # The thanks page names the page around the frame, to tell it its new height.
    thanks = f"{form_site.url}/thanks?form=contact&embed=1&origin={host.origin}"
    frame.wait_for_url(re.compile(re.escape(thanks)), timeout=10_000)
    assert frame.locator("h1").inner_text() == "Thank you"
    assert stored(form_site, email) == [("ham", [], "contact")]
    watched.assert_clean()


def test_a_site_not_listed_gets_neither_the_form_nor_the_frame(
        form_site: Site, stranger: HostPage, open_page: Any) -> None:
    """On an origin the form does not list the embed script gets no form (no CORS answer)
    and the iframe is refused by the site's frame-ancestors."""
    watched: WatchedPage = open_page()
    page = watched.page
    page.goto(f"{stranger.origin}/")
    page.locator(FRAME).wait_for()
    wait_until(lambda: any("frame-ancestors" in v for v in watched.csp_violations), 10,
               "Chromium refusing the frame")
    assert page.frame_locator(FRAME).locator("#contact-form").count() == 0
    assert page.locator(EMBEDDED).count() == 0
