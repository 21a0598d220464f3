"""The contact page in a real Chromium: upload progress, errors, no-JS, axe, screenshots."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from support.browser import (
    FIVE_MB_PDF,
    MIB,
    RECORD_PROGRESS,
    UPLOAD_BYTES_PER_SECOND,
    Site,
    assert_field_error,
    attach,
    axe_violations,
    fill_form,
    screenshot,
    serve,
    visitor_email,
)
from support.smtp_server import ReceivedMail, SMTPTestServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

SMALL_PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


@pytest.fixture
def single_recipient_site(tmp_path: Path, mail_server: SMTPTestServer,
                          browser: Any) -> Iterator[Site]:
    """The app with one recipient, where the form asks no one to choose."""
    built, live = serve(tmp_path, mail_server, CONTACT_RECIPIENTS="Owner <owner@example.com>")
    yield built
    live.stop()


def received_mail(smtp: SMTPTestServer, subject: str, timeout: float = 15) -> ReceivedMail:
    """The owner's mail with this subject, once the SMTP server has it."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in list(smtp.messages):
            if mail.message["Subject"] == f"[Contact] {subject}":
                return mail
        time.sleep(0.1)
    raise AssertionError(f"no mail with subject {subject!r} within {timeout}s")


def attachment_of(message: EmailMessage) -> tuple[str | None, str, bytes]:
    """(file name, content type, bytes) of the mail's single attachment."""
    [part] = list(message.iter_attachments())
    return part.get_filename(), part.get_content_type(), part.get_payload(decode=True)


def focused_id(page: Any) -> str:
    """The id of the element that has focus."""
    return page.evaluate("document.activeElement && document.activeElement.id")


def test_visitor_sends_a_5mb_file_and_sees_the_progress(site: Site, open_page: Any) -> None:
    """JS on: the bar moves while the button is disabled, /thanks follows, the file arrives."""
    watched = open_page()
    page = watched.page
    progress: list[dict[str, Any]] = []
    page.expose_function("recordProgress", lambda state: progress.append(state))
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {
        "offline": False, "latency": 0, "downloadThroughput": -1,
        "uploadThroughput": UPLOAD_BYTES_PER_SECOND})

    page.goto(f"{site.url}/")
    page.evaluate(RECORD_PROGRESS)
    subject = f"Scan {uuid.uuid4().hex[:6]}"
    fill_form(page, subject, visitor_email())
    attach(page, "scan.pdf", FIVE_MB_PDF)
    assert page.locator("#attachment-info").inner_text() == "Selected: scan.pdf (5.0 MB)"
    with page.expect_response(lambda r: r.request.method == "POST", timeout=30_000) as answer:
        page.click("#submit-button")
        page.wait_for_function("() => document.getElementById('upload-progress').value >= 20",
                               polling=50, timeout=30_000)
        screenshot(page, "contact-1280-uploading")
    assert answer.value.status == 202
    assert answer.value.headers["content-type"] == "application/json"
    assert answer.value.request.headers["accept"] == "application/json"
    page.wait_for_url(f"{site.url}/thanks", timeout=30_000)

    values = [state["value"] for state in progress]
    assert len({v for v in values if 0 < v < 100}) >= 3, f"the bar did not move: {values}"
    assert values == sorted(values) and values[-1] == 100
    assert all(s["disabled"] and s["button"] == "Sending…" for s in progress), progress
    statuses = [state["status"] for state in progress]
    assert any(re.fullmatch(r"Uploading: [1-9]0%", text) for text in statuses), statuses
    assert statuses[-1].startswith("Uploaded: 100%")
    assert page.locator("h1").inner_text() == "Thank you"
    assert attachment_of(received_mail(site.smtp, subject).message) == (
        "scan.pdf", "application/pdf", FIVE_MB_PDF)
    watched.assert_clean()


def test_same_flow_without_javascript(site: Site, open_page: Any) -> None:
    """JS off: the form posts as plain HTML, 303 to /thanks, the file arrives byte for byte."""
    watched = open_page(javascript=False)
    page = watched.page
    page.goto(f"{site.url}/")
    subject = f"No JS {uuid.uuid4().hex[:6]}"
    fill_form(page, subject, visitor_email())
    attach(page, "scan.pdf", FIVE_MB_PDF)
    with page.expect_navigation(url=f"{site.url}/thanks", timeout=30_000):
        page.click("#submit-button")
    assert page.locator("h1").inner_text() == "Thank you"
    assert len(watched.posts) == 1
    assert attachment_of(received_mail(site.smtp, subject).message) == (
        "scan.pdf", "application/pdf", FIVE_MB_PDF)
    watched.assert_clean()


@pytest.mark.parametrize("javascript", [True, False], ids=["js", "no-js"])
def test_errors_show_beside_their_fields_with_focus_on_the_summary(
        site: Site, open_page: Any, javascript: bool) -> None:
    """An address the server refuses and a blank message: messages in place, summary focused."""
    watched = open_page(javascript=javascript)
    page = watched.page
    page.goto(f"{site.url}/")
    before = site.submissions()
    # Both pass the browser's own checks (required, type=email) and fail on the server;
    # with JavaScript the page's own checks (the server's rules) find them before sending.
    fill_form(page, "Engines", email="ada@example", message="   ")
    if javascript:
        page.click("#submit-button")
        page.locator("#error-summary").wait_for(state="visible")
        assert watched.posts == []
    else:
        with page.expect_navigation():
            page.click("#submit-button")
        assert page.title().startswith("Error: ")

    assert_field_error(page, "email", "Enter a valid email address.")
    assert_field_error(page, "message", "Enter your message.")
    assert page.locator("#subject").get_attribute("aria-invalid") is None
    assert page.locator("#email").input_value() == "ada@example"
    assert page.locator("#error-summary-list a").all_inner_texts()[0].startswith(
        "Enter a valid email address.")
    assert page.locator("#error-summary-list a").nth(1).inner_text() == "Enter your message."
    page.wait_for_function("() => document.activeElement.id === 'error-summary'", timeout=5_000)
    assert site.submissions() == before
    if javascript:
        assert page.locator("#submit-button").is_enabled()
        assert page.locator("#submit-button").inner_text() == "Send message"
        assert page.title() == "Error: Contact"
        assert page.locator("#upload-progress").is_hidden()
        page.locator("#error-summary-list a").first.click()
        assert focused_id(page) == "email"
        assert axe_violations(page) == []
    watched.assert_clean()


def test_axe_finds_no_violations_on_errors_rendered_by_the_server(
        site: Site, open_page: Any) -> None:
    """The 422 page of the no-JS path passes axe (axe itself needs scripts, contact.js is cut)."""
    watched = open_page()
    page = watched.page
    page.route("**/static/contact.js", lambda route: route.abort())
    page.goto(f"{site.url}/")
    fill_form(page, "Engines", email="ada@example", message="   ")
    with page.expect_navigation():
        page.click("#submit-button")
    assert page.locator("#error-summary").is_visible()
    assert axe_violations(page) == []
    watched.assert_clean()


def test_oversize_or_wrong_type_file_is_refused_before_upload(
        small_limit_site: Site, open_page: Any) -> None:
    """Over CONTACT_MAX_UPLOAD_MB or off the allowlist: the server's words, nothing sent."""
    site = small_limit_site
    watched = open_page()
    page = watched.page
    page.goto(f"{site.url}/")
    fill_form(page, "Too big", visitor_email())

    attach(page, "scan.pdf", b"%PDF-1.4\n" + bytes(MIB))
    assert_field_error(page, "attachment", "The file is larger than the limit of 1 MB.")
    assert page.locator("#attachment").evaluate("input => input.files.length") == 0
    assert "Not added: scan.pdf (1.0 MB)" in page.locator("#attachment-info").inner_text()
    page.click("#submit-button")
    page.wait_for_function("() => document.activeElement.id === 'error-summary'", timeout=5_000)
    assert "The file is larger than the limit of 1 MB." in page.locator(
        "#error-summary").inner_text()

    attach(page, "tool.exe", b"MZ" + bytes(100), mime="application/octet-stream")
    assert_field_error(page, "attachment", "Files of this type are not accepted. Allowed "
                       "types: pdf, png, jpg, jpeg, gif, txt, docx, odt.")
    page.click("#submit-button")
    page.wait_for_timeout(300)
    assert watched.posts == []
    assert site.submissions() == 0 and site.stored_files() == []
    watched.assert_clean()


def test_file_refused_by_the_server_shows_beside_the_field(
        single_recipient_site: Site, open_page: Any) -> None:
    """One recipient: no choice asked; a .pdf that is not a PDF gets the server's words in place."""
    site = single_recipient_site
    watched = open_page()
    page = watched.page
    page.goto(f"{site.url}/")
    assert page.locator("#recipient").count() == 0
    page.fill("#email", visitor_email())
    page.fill("#subject", "Fake")
    page.fill("#message", "See the file.")
    attach(page, "fake.pdf", b"just text, not a PDF")
    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#submit-button")
    assert answer.value.status == 422
    page.locator("#error-summary").wait_for(state="visible")
    assert_field_error(page, "attachment", "The file's content is not a .pdf file.")
    assert site.submissions() == 0
    assert axe_violations(page) == []

    page.set_input_files("#attachment", files=[])
    with page.expect_navigation(url=f"{site.url}/thanks"):
        page.click("#submit-button")
    assert site.submissions() == 1
    watched.assert_clean()


@pytest.mark.parametrize("path", ["/", "/thanks", "/no-such-page"])
def test_axe_finds_no_violations(site: Site, open_page: Any, path: str) -> None:
    """axe-core reports zero violations on the contact page, the thank-you and an error page."""
    watched = open_page()
    watched.page.goto(f"{site.url}{path}")
    assert axe_violations(watched.page) == []
    watched.assert_clean()


def test_form_attributes_match_the_server_rules(site: Site, open_page: Any) -> None:
    """Labels for every control, required marked in words, limits as the server checks them."""
    watched = open_page()
    page = watched.page
    page.goto(f"{site.url}/")
    controls = page.locator("#contact-form :is(input, select, textarea):not([type=hidden])")
    for control in controls.all():
        labels = control.evaluate("c => Array.from(c.labels, l => l.textContent)")
        assert labels, f"no label for #{control.get_attribute('id')}"
        required = control.get_attribute("required") is not None
        assert required == ("(required)" in labels[0]), labels[0]
    required = page.locator("#contact-form [required]").evaluate_all("cs => cs.map(c => c.id)")
    assert required == ["recipient", "email", "subject", "message"]
    limits = {name: page.locator(f"#{name}").get_attribute("maxlength")
              for name in ("name", "email", "subject", "message")}
    assert limits == {"name": "100", "email": "254", "subject": "200", "message": "10000"}
    allowed = site.app.config["CONTACT_ALLOWED_EXTENSIONS"]
    accept = page.locator("#attachment").get_attribute("accept")
    assert accept == ",".join(f".{ext}" for ext in allowed)
    assert page.locator("#email").get_attribute("type") == "email"
    watched.assert_clean()


def test_keyboard_focus_is_visible(site: Site, open_page: Any) -> None:
    """Tab shows the skip link first, then every control gets a visible outline."""
    watched = open_page()
    page = watched.page
    page.goto(f"{site.url}/")
    page.keyboard.press("Tab")
    assert focused_id(page) == "" and page.locator(".skip-link").is_visible()
    assert page.locator(".skip-link").bounding_box()["x"] >= 0
    seen = []
    for _ in range(8):
        page.keyboard.press("Tab")
        style = page.evaluate("""() => {
          const s = getComputedStyle(document.activeElement);
          return [document.activeElement.id, s.outlineStyle, parseFloat(s.outlineWidth)];
        }""")
        seen.append(style[0])
        assert style[1] == "solid" and style[2] >= 2, style
    # The header's links (the site's name, the other languages) first, then the form in order.
    assert [name for name in seen if name][:5] == ["recipient", "name", "email", "subject",
                                                   "message"]
    assert seen[0] == ""
    watched.assert_clean()


def test_thanks_page_says_what_happens_next(site: Site, open_page: Any) -> None:
    """The visitor learns that a confirmation mail is coming and how the answer will come."""
    watched = open_page(width=375)
    watched.page.goto(f"{site.url}/thanks")
    screenshot(watched.page, "thanks-375")
    text = watched.page.locator("main").inner_text()
    assert "What happens next" in text and "confirmation email" in text
    watched.assert_clean()


@pytest.mark.parametrize("width", [375, 1280])
def test_screenshot_of_the_page(site: Site, open_page: Any, width: int) -> None:
    """A full-page screenshot for a reviewer, in test-output/, without sideways scrolling."""
    watched = open_page(width=width)
    page = watched.page
    page.goto(f"{site.url}/")
    screenshot(page, f"contact-{width}")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    watched.assert_clean()


def test_page_fits_320_pixels_with_errors_shown(site: Site, open_page: Any) -> None:
    """The narrowest phone: errors and all, nothing sticks out sideways."""
    watched = open_page(javascript=False, width=320)
    page = watched.page
    page.goto(f"{site.url}/")
    fill_form(page, "Narrow", email="ada@example", message=" ")
    with page.expect_navigation():
        page.click("#submit-button")
    screenshot(page, "contact-320-errors")
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    watched.assert_clean()


def test_csp_violations_are_noticed(site: Site, open_page: Any) -> None:
    """The watcher the other tests rely on does see an inline script the CSP blocks."""
    watched = open_page()
    watched.page.goto(f"{site.url}/")
    watched.page.evaluate("""() => {
      const script = document.createElement('script');
      script.textContent = 'window.ran = true';
      document.body.appendChild(script);
    }""")
    watched.page.wait_for_timeout(100)
    assert watched.page.evaluate("window.ran") is None
    assert watched.csp_violations


def test_dev_mailbox_lists_and_shows_a_captured_mail(site: Site, open_page: Any) -> None:
    """List (date, to, subject, attachments), text body, sandboxed HTML body, attachment link."""
    watched = open_page()
    page = watched.page
    page.goto(f"{site.url}/")
    subject = f"Mailbox {uuid.uuid4().hex[:6]}"
    fill_form(page, subject, visitor_email(), message="First line\nSecond line")
    attach(page, "notes.pdf", SMALL_PDF)
    page.click("#submit-button")
    page.wait_for_url(f"{site.url}/thanks")
    captured = received_mail(site.smtp, subject)
    folder = Path(site.app.instance_path) / "devmail"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"20260101T000000-{uuid.uuid4().hex}.eml").write_bytes(captured.data)

    page.goto(f"{site.url}/dev/mailbox")
    row = page.locator("tr", has=page.get_by_role("link", name=f"[Contact] {subject}"))
    cells = row.locator("td").all_inner_texts()
    assert cells[1] == "Sales <sales@example.com>" and cells[3] == "1"
    assert re.search(r"\d{4}", cells[0])
    assert axe_violations(page) == []
    screenshot(page, "dev-mailbox-1280")
    row.get_by_role("link").click()

    assert "First line\nSecond line" in page.locator("pre.mail-text").inner_text()
    assert page.locator("iframe.mail-html").get_attribute("sandbox") == ""
    frame = page.frame_locator("iframe.mail-html")
    assert "Second line" in frame.locator("body").inner_text(timeout=5_000)
    link = page.get_by_role("link", name="notes.pdf")
    with page.expect_download() as download:
        link.click()
    assert Path(download.value.path()).read_bytes() == SMALL_PDF
    screenshot(page, "dev-message-1280")
    assert axe_violations(page) == []
    page.set_viewport_size({"width": 375, "height": 800})
    assert axe_violations(page) == [], "at 375 px, where the tables scroll"
    page.go_back()
    assert axe_violations(page) == [], "at 375 px, where the tables scroll"
    watched.assert_clean()


def test_message_at_maxlength_with_line_breaks_is_accepted(site: Site, open_page: Any) -> None:
    """What maxlength lets a visitor type (10,000 characters, line breaks included) is accepted."""
    watched = open_page(javascript=False)
    page = watched.page
    page.goto(f"{site.url}/")
    fill_form(page, "Long", visitor_email(), message=("a" * 99 + "\n") * 100)
    assert page.locator("#message").evaluate("area => area.value.length") == 10_000
    with page.expect_navigation():
        page.click("#submit-button")
    assert page.url == f"{site.url}/thanks", page.locator("#error-summary").inner_text()
