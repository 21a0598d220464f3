"""The contact page in English and Chinese in a real Chromium: its own checks, in its words.

With JavaScript the form has `novalidate`: the browser shows no bubble of its own, and the
page's script checks the server's rules, showing the page's messages (in the page's
language) beside the fields, with the error summary focused.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from support.browser import (
    FIVE_MB_PDF,
    MIB,
    RECORD_PROGRESS,
    UPLOAD_BYTES_PER_SECOND,
    Site,
    WatchedPage,
    assert_field_error,
    attach,
    axe_violations,
    fill_form,
    screenshot,
    visitor_email,
)

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

LANGUAGES = ["en", "zh"]
WIDTHS = [320, 375, 1280]
# Han ideographs and CJK punctuation: Chinese text has them, English text has none.
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
# What the browser reports of its own validation; a bubble follows an `invalid` event.
RECORD_SUBMITS = """() => {
  window.seen = {invalid: 0, submit: 0};
  document.addEventListener('invalid', () => { window.seen.invalid += 1; }, true);
  document.getElementById('contact-form')
    .addEventListener('submit', () => { window.seen.submit += 1; }, true);
}"""
FITS = "document.documentElement.scrollWidth <= window.innerWidth"


def open_contact(opener: Any, target: Site, lang: str, **options: Any) -> WatchedPage:
    """The contact page chosen with ?lang=, its <html lang> naming that language."""
    watched = opener(**options)
    watched.page.goto(f"{target.url}/?lang={lang}")
    tag = watched.page.locator("html").get_attribute("lang") or ""
    assert tag.split("-")[0] == lang, f"<html lang={tag!r}> for ?lang={lang}"
    return watched


def page_messages(page: Any) -> dict[str, Any]:
    """The script's words as the page hands them over (data-messages on the form)."""
    return json.loads(page.locator("#contact-form").get_attribute("data-messages"))


def assert_in_language(text: str, lang: str) -> None:
    """Chinese text holds Chinese characters; English text holds none."""
    assert text.strip(), "no text"
    if lang == "zh":
        assert CJK.search(text), f"not Chinese: {text!r}"
    else:
        assert not CJK.search(text), f"not English: {text!r}"


def shown_error(page: Any, name: str) -> str:
    """The error beside a field, once checked to be shown and wired to the field."""
    assert_field_error(page, name, "")
    return page.locator(f"#{name}-error").inner_text()


def submit_and_wait_for_summary(page: Any) -> None:
    """Send the form and wait until the error summary has the focus."""
    page.click("#submit-button")
    page.wait_for_function("() => document.activeElement.id === 'error-summary'", timeout=5_000)


def show_own_errors(page: Any) -> None:
    """An address without a dot after the @ and an empty message, sent with JavaScript."""
    fill_form(page, "Engines", email="ada@example", message="")
    submit_and_wait_for_summary(page)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_own_checks_replace_the_browser_bubble(
        site: Site, open_page: Any, lang: str) -> None:
    """No native bubble: the script gets the submit and shows the page's words, summary focused."""
    watched = open_contact(open_page, site, lang)
    page = watched.page
    assert page.locator("#contact-form").evaluate("form => form.noValidate") is True
    page.evaluate(RECORD_SUBMITS)
    messages = page_messages(page)

    show_own_errors(page)

    assert page.evaluate("window.seen") == {"invalid": 0, "submit": 1}
    assert watched.posts == []
    email_error = shown_error(page, "email")
    message_error = shown_error(page, "message")
    assert email_error == messages["email_invalid"]
    assert message_error == messages["required"]["message"]
    assert_in_language(email_error, lang)
    assert_in_language(message_error, lang)
    assert page.locator("#subject").get_attribute("aria-invalid") is None
    links = page.locator("#error-summary-list a")
    assert links.all_inner_texts() == [email_error, message_error]
    assert [link.get_attribute("href") for link in links.all()] == ["#email", "#message"]
    assert page.title() == messages["error_title"]
    watched.assert_clean()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_without_javascript_the_server_answers_in_the_page_language(
        site: Site, open_page: Any, lang: str) -> None:
    """No script: the browser's own checks stay; past them, the server's 422 page in place."""
    watched = open_contact(open_page, site, lang, javascript=False)
    page = watched.page
    assert page.locator("#contact-form").get_attribute("novalidate") is None
    fill_form(page, "Engines", email="ada@example", message="   ")
    with page.expect_navigation():
        page.click("#submit-button")
    assert_in_language(shown_error(page, "email"), lang)
    assert_in_language(shown_error(page, "message"), lang)
    assert page.locator("#error-summary").is_visible()
    watched.assert_clean()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_script_message_is_in_the_page_language(
        site: Site, open_page: Any, lang: str) -> None:
    """Every word the script may show comes from the page, in the page's language."""
    watched = open_contact(open_page, site, lang)
    messages = page_messages(watched.page)
    assert set(messages["required"]) == {"recipient", "email", "subject", "message"}
    assert set(messages["file_too_large"]) == set(messages["file_type"]) == {"attachment"}
    # Words kept per field are checked each; the rest are one sentence each.
    texts = [(f"{key}.{name}", text) for key, value in messages.items() if isinstance(value, dict)
             for name, text in value.items()]
    texts += [(key, value) for key, value in messages.items() if not isinstance(value, dict)]
    for key, text in texts:
        assert isinstance(text, str) and text, key
        assert_in_language(text, lang)
    watched.assert_clean()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_a_field_over_its_maxlength_gets_the_limit_in_words(
        site: Site, open_page: Any, lang: str) -> None:
    """A subject longer than maxlength (set by a script, as autofill can): the limit, filled in."""
    watched = open_contact(open_page, site, lang)
    page = watched.page
    fill_form(page, "Engines", visitor_email())
    page.locator("#subject").evaluate("input => { input.value = 'x'.repeat(201); }")
    submit_and_wait_for_summary(page)
    error = shown_error(page, "subject")
    assert error == page_messages(page)["too_long"].replace("{max}", "200")
    assert_in_language(error, lang)
    assert watched.posts == []
    watched.assert_clean()


def test_line_breaks_count_as_one_character_like_the_server(
        site: Site, open_page: Any) -> None:
    """10,000 characters with line breaks (CRLF when sent) pass the script and the server."""
    watched = open_contact(open_page, site, "en")
    page = watched.page
    fill_form(page, "Long", visitor_email(), message=("a" * 99 + "\n") * 100)
    with page.expect_navigation(url=f"{site.url}/thanks"):
        page.click("#submit-button")
    assert len(watched.posts) == 1
    watched.assert_clean()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_server_refusal_after_upload_shows_beside_the_field(
        site: Site, open_page: Any, lang: str) -> None:
    """An address only the server can refuse: its 422 JSON, in the page's language, in place."""
    watched = open_contact(open_page, site, lang)
    page = watched.page
    before = site.submissions()
    fill_form(page, "Engines", email="ada..lovelace@example.com")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#submit-button")
    assert answer.value.status == 422
    page.wait_for_function("() => document.activeElement.id === 'error-summary'", timeout=5_000)
    error = shown_error(page, "email")
    assert error == answer.value.json()["errors"]["email"][0]
    if lang == "zh":
        assert CJK.search(error), error
    assert site.submissions() == before
    assert page.locator("#submit-button").is_enabled()
    assert page.locator("#upload-progress").is_hidden()
    watched.assert_clean()


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(("name", "content", "key"), [
    ("scan.pdf", b"%PDF-1.4\n" + bytes(MIB), "file_too_large"),
    ("tool.exe", b"MZ" + bytes(100), "file_type"),
], ids=["too-large", "wrong-type"])
def test_file_refused_before_upload_with_the_page_words(
        small_limit_site: Site, open_page: Any,
        lang: str, name: str, content: bytes, key: str) -> None:
    """Over CONTACT_MAX_UPLOAD_MB or off the list: refused when chosen, nothing uploaded."""
    limited = small_limit_site
    watched = open_contact(open_page, limited, lang)
    page = watched.page
    messages = page_messages(page)
    fill_form(page, "Files", visitor_email())

    attach(page, name, content, mime="application/octet-stream")
    error = shown_error(page, "attachment")
    assert error == messages[key]["attachment"]
    assert_in_language(error, lang)
    assert page.locator("#attachment").evaluate("input => input.files.length") == 0
    assert name in page.locator("#attachment-info").inner_text()
    submit_and_wait_for_summary(page)
    assert page.locator("#error-summary-list a").all_inner_texts() == [messages[key]["attachment"]]
    assert watched.posts == []
    assert limited.submissions() == 0 and limited.stored_files() == []
    watched.assert_clean()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_upload_progress_is_announced_in_the_page_language(
        site: Site, open_page: Any, lang: str) -> None:
    """The live status reads the page's words every 10 %; the button says it is sending."""
    watched = open_contact(open_page, site, lang)
    page = watched.page
    messages = page_messages(page)
    progress: list[dict[str, Any]] = []
    page.expose_function("recordProgress", lambda state: progress.append(state))
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": UPLOAD_BYTES_PER_SECOND})
    page.evaluate(RECORD_PROGRESS)
    fill_form(page, "Scan", visitor_email())
    attach(page, "scan.pdf", FIVE_MB_PDF)
    assert "scan.pdf" in page.locator("#attachment-info").inner_text()

    with page.expect_navigation(url=f"{site.url}/thanks", timeout=30_000):
        page.click("#submit-button")

    steps = {messages["upload_progress"].replace("{percent}", f"{step}%")
             for step in range(0, 100, 10)}
    done = messages["upload_done"].replace("{percent}", "100%")
    statuses = [state["status"] for state in progress]
    assert set(statuses) <= steps | {done}, statuses
    assert len(set(statuses) & steps) >= 3 and statuses[-1] == done, statuses
    assert {state["button"] for state in progress} == {messages["sending"]}
    assert_in_language(done, lang)
    watched.assert_clean()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_axe_finds_no_violations_in_either_language(
        site: Site, open_page: Any, lang: str) -> None:
    """axe-core is clean on the page, and with the script's errors shown."""
    watched = open_contact(open_page, site, lang)
    page = watched.page
    assert axe_violations(page) == []
    show_own_errors(page)
    assert axe_violations(page) == []
    watched.assert_clean()


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("lang", LANGUAGES)
def test_page_fits_the_screen_in_either_language(
        site: Site, open_page: Any, lang: str, width: int) -> None:
    """Screenshots in test-output/, before and with errors: nothing sticks out sideways."""
    watched = open_contact(open_page, site, lang, width=width, height=800)
    page = watched.page
    screenshot(page, f"contact-{lang}-{width}")
    assert page.evaluate(FITS), page.evaluate("document.documentElement.scrollWidth")
    show_own_errors(page)
    screenshot(page, f"contact-{lang}-{width}-errors")
    assert page.evaluate(FITS), page.evaluate("document.documentElement.scrollWidth")
    watched.assert_clean()
