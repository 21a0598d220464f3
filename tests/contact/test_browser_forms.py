"""A declared form in a real Chromium: labels, axe, the script's checks, a complete send.

The forms file (CONTACT_FORMS_FILE) declares a "careers" form with every kind of field;
the page's script checks it with the words the page hands over (data-messages, the
server's own words), per field, in English and Chinese.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.browser import (
    Site,
    WatchedPage,
    assert_field_error,
    axe_violations,
    serve,
    visitor_email,
)
from support.smtp_server import ReceivedMail, SMTPTestServer

pytestmark = [pytest.mark.browser, pytest.mark.timeout(120)]

FORMS = """
[[forms]]
slug = "contact"
title = { en = "Contact us", zh = "联系我们" }

  [[forms.fields]]
  name = "email"
  type = "email"
  label = { en = "Email", zh = "电子邮件" }
  required = true

  [[forms.fields]]
  name = "message"
  type = "textarea"
  label = { en = "Message", zh = "留言" }
  required = true

[[forms]]
slug = "careers"
title = { en = "Work with us", zh = "加入我们" }
recipients = ["Jobs <jobs@example.com>"]

  [[forms.fields]]
  name = "name"
  type = "text"
  label = { en = "Full name", zh = "姓名" }
  required = true

  [[forms.fields]]
  name = "email"
  type = "email"
  label = { en = "Email", zh = "电子邮件" }
  required = true

  [[forms.fields]]
  name = "phone"
  type = "tel"
  label = { en = "Phone", zh = "电话" }

  [[forms.fields]]
  name = "portfolio"
  type = "url"
  label = { en = "Portfolio", zh = "作品集" }

  [[forms.fields]]
  name = "years"
  type = "number"
  label = { en = "Years of experience", zh = "工作年限" }
  min = 0
  max = 50

  [[forms.fields]]
  name = "start"
  type = "date"
  label = { en = "Earliest start", zh = "最早入职日期" }

  [[forms.fields]]
  name = "role"
  type = "select"
  label = { en = "Role", zh = "职位" }
  required = true
  options = [
    { value = "engineer", label = { en = "Engineer", zh = "工程师" } },
    { value = "designer", label = { en = "Designer", zh = "设计师" } },
  ]

  [[forms.fields]]
  name = "consent"
  type = "consent"
  label = { en = "Privacy", zh = "隐私" }
  required = true
  text.en = "I agree that you keep my application for six months."
  text.zh = "我同意你们将我的申请保存六个月。"

  [[forms.fields]]
  name = "cv"
  type = "file"
  label = { en = "CV", zh = "简历" }
  required = true
  extensions = ["pdf"]
  max_files = 2

  [[forms.fields]]
  name = "message"
  type = "textarea"
  label = { en = "Message", zh = "留言" }
"""

LANGUAGES = ["en", "zh"]
# Han ideographs and CJK punctuation: Chinese text has them, English text has none.
CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
# Two small, different PDFs: each is checked by its content, and a swap would show.
CV_PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
LETTER_PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer <<>>\n%%EOF\n"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(64)


def pdf(name: str, content: bytes = CV_PDF) -> dict[str, Any]:
    """A file as Playwright chooses it."""
    return {"name": name, "mimeType": "application/pdf", "buffer": content}


@pytest.fixture(scope="module")
def careers_site(tmp_path_factory: pytest.TempPathFactory, mail_server: SMTPTestServer,
                 browser: Any) -> Iterator[Site]:
    """The app with a forms file declaring a contact form and the careers form."""
    root = tmp_path_factory.mktemp("forms-site")
    forms_file = root / "forms.toml"
    forms_file.write_text(FORMS, encoding="utf-8")
    built, live = serve(root, mail_server, CONTACT_FORMS_FILE=str(forms_file))
    yield built
    live.stop()


def open_careers(opener: Any, site: Site, lang: str, **options: Any) -> WatchedPage:
    """/f/careers chosen with ?lang=, its <html lang> naming that language."""
    watched: WatchedPage = opener(**options)
    watched.page.goto(f"{site.url}/f/careers?lang={lang}")
    tag = watched.page.locator("html").get_attribute("lang") or ""
    assert tag.split("-")[0] == lang, f"<html lang={tag!r}> for ?lang={lang}"
    return watched


def page_messages(page: Any) -> dict[str, Any]:
    """The script's words as the page hands them over (data-messages on the form)."""
    messages: dict[str, Any] = json.loads(
        page.locator("#contact-form").get_attribute("data-messages"))
    return messages


def assert_chinese_if(lang: str, text: str) -> None:
    """Words of the Chinese page hold Chinese characters (here, at least the field's label)."""
    assert text.strip(), "no text"
    if lang == "zh":
        assert CJK.search(text), f"not Chinese: {text!r}"


def shown_error(page: Any, name: str) -> str:
    """The error beside a field, once checked to be shown and wired to the field."""
    assert_field_error(page, name, "")
    return str(page.locator(f"#{name}-error").inner_text())


def submit_and_wait_for_summary(page: Any) -> None:
    """Send the form and wait until the error summary has the focus."""
    page.click("#submit-button")
    page.wait_for_function("() => document.activeElement.id === 'error-summary'", timeout=5_000)


def fill_careers(page: Any, email: str) -> None:
    """Every field but the files, as a visitor fills them in."""
    page.fill("#name", "Grace Hopper")
    page.fill("#email", email)
    page.fill("#phone", "+44 20 7946 0000")
    page.fill("#portfolio", "https://grace.example.com/")
    page.fill("#years", "7.5")
    page.fill("#start", "2026-09-01")
    page.select_option("#role", "engineer")
    page.check("#consent")
    page.fill("#message", "I would like to join.")


def owner_mail(smtp: SMTPTestServer, visitor: str, timeout: float = 15) -> ReceivedMail:
    """The mail to the careers form's recipient answering `visitor`, once it has arrived."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for mail in list(smtp.messages):
            if "jobs@example.com" in mail.rcpt_tos and visitor in str(mail.message["Reply-To"]):
                return mail
        time.sleep(0.1)
    raise AssertionError(f"no mail to jobs@example.com answering {visitor} within {timeout}s")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_control_has_a_label_and_axe_finds_no_violations(
        careers_site: Site, open_page: Any, lang: str) -> None:
    """Each declared field is a labelled control, required where declared; axe is clean."""
    watched = open_careers(open_page, careers_site, lang)
    page = watched.page
    controls = page.locator("#contact-form :is(input, select, textarea):not([type=hidden])")
    for control in controls.all():
        labels = control.evaluate("c => Array.from(c.labels, l => l.textContent.trim())")
        assert labels and labels[0], f"no label for #{control.get_attribute('id')}"
    consent = page.locator("#consent").evaluate("c => c.labels[0].textContent.trim()")
    assert_chinese_if(lang, consent)
    assert consent.endswith("六个月。" if lang == "zh" else "for six months.")
    required = page.locator("#contact-form [required]").evaluate_all("cs => cs.map(c => c.id)")
    assert required == ["name", "email", "role", "consent", "cv"]
    kinds = {name: page.locator(f"#{name}").get_attribute("type")
             for name in ("phone", "portfolio", "years", "start", "consent", "cv")}
    assert kinds == {"phone": "tel", "portfolio": "url", "years": "number", "start": "date",
                     "consent": "checkbox", "cv": "file"}
    cv = page.locator("#cv")
    assert (cv.get_attribute("accept"), cv.get_attribute("data-max-files")) == (".pdf", "2")
    assert cv.get_attribute("multiple") is not None
    assert axe_violations(page) == []
    watched.assert_clean()


@pytest.mark.parametrize("lang", LANGUAGES)
def test_empty_required_choice_and_consent_get_the_server_words(
        careers_site: Site, open_page: Any, lang: str) -> None:
    """No role chosen, consent not ticked: the server's words in place and in the summary."""
    watched = open_careers(open_page, careers_site, lang)
    page = watched.page
    required = page_messages(page)["required"]
    fill_careers(page, visitor_email())
    page.select_option("#role", "")
    page.uncheck("#consent")
    page.set_input_files("#cv", files=[pdf("cv.pdf")])

    submit_and_wait_for_summary(page)

    assert watched.posts == []
    assert shown_error(page, "role") == required["role"]
    assert shown_error(page, "consent") == required["consent"]
    for name in ("role", "consent"):
        assert_chinese_if(lang, required[name])
    links = page.locator("#error-summary-list a")
    assert links.all_inner_texts() == [required["role"], required["consent"]]
    assert [link.get_attribute("href") for link in links.all()] == ["#role", "#consent"]
    assert page.locator("#cv").get_attribute("aria-invalid") is None
    assert axe_violations(page) == []
    watched.assert_clean()


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize(("chosen", "key"), [
    ([{"name": "photo.png", "mimeType": "image/png", "buffer": PNG}], "file_type"),
    ([pdf("cv.pdf"), pdf("letter.pdf", LETTER_PDF), pdf("more.pdf")], "too_many_files"),
], ids=["png-in-pdf-only", "three-in-max-two"])
def test_files_refused_when_chosen_with_the_field_words(
        careers_site: Site, open_page: Any, lang: str,
        chosen: list[dict[str, Any]], key: str) -> None:
    """A .png where only PDFs go, or three files where two may: cleared, the field's words."""
    watched = open_careers(open_page, careers_site, lang)
    page = watched.page
    messages = page_messages(page)
    words = messages[key]["cv"] if key == "file_type" else messages[key].replace("{max}", "2")
    fill_careers(page, visitor_email())

    page.set_input_files("#cv", files=chosen)

    assert shown_error(page, "cv") == words
    if key == "file_type":
        assert_chinese_if(lang, words)
    assert page.locator("#cv").evaluate("input => input.files.length") == 0
    info = page.locator("#cv-info").inner_text()
    assert all(file["name"] in info for file in chosen), info
    submit_and_wait_for_summary(page)
    assert page.locator("#error-summary-list a").all_inner_texts() == [words]
    assert watched.posts == []
    # Refused once: the next send says the required field has no file.
    submit_and_wait_for_summary(page)
    assert shown_error(page, "cv") == messages["required"]["cv"]
    assert watched.posts == []
    watched.assert_clean()


def test_a_web_address_without_its_scheme_is_refused_before_sending(
        careers_site: Site, open_page: Any) -> None:
    """www.example.com: the page says http:// or https:// is needed; nothing is sent."""
    watched = open_careers(open_page, careers_site, "en")
    page = watched.page
    fill_careers(page, visitor_email())
    page.fill("#portfolio", "www.example.com")
    page.set_input_files("#cv", files=[pdf("cv.pdf")])

    submit_and_wait_for_summary(page)

    assert shown_error(page, "portfolio") == page_messages(page)["url_invalid"]
    assert watched.posts == []
    watched.assert_clean()


def test_a_number_outside_the_bounds_is_answered_by_the_server(
        careers_site: Site, open_page: Any) -> None:
    """The page has no words for the bounds, so it sends: the server's refusal, in place."""
    watched = open_careers(open_page, careers_site, "en")
    page = watched.page
    before = careers_site.submissions()
    fill_careers(page, visitor_email())
    page.fill("#years", "51")
    page.set_input_files("#cv", files=[pdf("cv.pdf")])

    with page.expect_response(lambda r: r.request.method == "POST") as answer:
        page.click("#submit-button")

    assert answer.value.status == 422
    page.wait_for_function("() => document.activeElement.id === 'error-summary'", timeout=5_000)
    assert shown_error(page, "years") == "Enter a number from 0 to 50."
    assert careers_site.submissions() == before
    watched.assert_clean()


def test_a_typed_text_that_is_no_number_is_refused_before_sending(
        careers_site: Site, open_page: Any) -> None:
    """What the browser cannot read as a number (badInput) gets the page's words, unsent."""
    watched = open_careers(open_page, careers_site, "en")
    page = watched.page
    fill_careers(page, visitor_email())
    page.fill("#years", "")
    page.locator("#years").press_sequentially("1e")
    page.set_input_files("#cv", files=[pdf("cv.pdf")])

    submit_and_wait_for_summary(page)

    assert shown_error(page, "years") == page_messages(page)["number_invalid"]
    assert watched.posts == []
    watched.assert_clean()


def test_a_date_typed_in_part_is_refused_before_sending(
        careers_site: Site, open_page: Any) -> None:
    """A month without its day and year (badInput, an empty value): the page's date words."""
    watched = open_careers(open_page, careers_site, "en")
    page = watched.page
    fill_careers(page, visitor_email())
    page.fill("#start", "")
    page.locator("#start").press_sequentially("09")
    assert page.locator("#start").evaluate("input => input.validity.badInput") is True
    page.set_input_files("#cv", files=[pdf("cv.pdf")])

    submit_and_wait_for_summary(page)

    assert shown_error(page, "start") == page_messages(page)["date_invalid"]
    assert watched.posts == []
    watched.assert_clean()


def test_a_complete_application_with_two_pdfs_is_stored_and_mailed(
        careers_site: Site, open_page: Any) -> None:
    """Every field valid and two PDFs: the thanks page, both files stored and attached."""
    watched = open_careers(open_page, careers_site, "en")
    page = watched.page
    email = visitor_email()
    fill_careers(page, email)
    page.set_input_files("#cv", files=[pdf("cv.pdf"), pdf("letter.pdf", LETTER_PDF)])
    info = page.locator("#cv-info").inner_text()
    assert "Selected: cv.pdf" in info and "Selected: letter.pdf" in info

    page.click("#submit-button")

    page.wait_for_url(re.compile(rf"{re.escape(careers_site.url)}/thanks(\?.*)?$"),
                      timeout=30_000)
    assert page.locator("h1").inner_text() == "Thank you"
    assert len(watched.posts) == 1
    with careers_site.app.app_context():
        submission = db.session.scalars(
            select(Submission).where(Submission.email == email)).one()
        assert submission.form_slug == "careers"
        stored = [(f.field, f.position, f.name, f.size, f.path) for f in submission.files]
    assert [row[:4] for row in stored] == [("cv", 0, "cv.pdf", len(CV_PDF)),
                                           ("cv", 1, "letter.pdf", len(LETTER_PDF))]
    uploads = careers_site.root / "uploads"
    assert [(uploads / str(row[4])).read_bytes() for row in stored] == [CV_PDF, LETTER_PDF]
    attached = [(part.get_filename(), part.get_payload(decode=True))
                for part in owner_mail(careers_site.smtp, email).message.iter_attachments()]
    assert attached == [("cv.pdf", CV_PDF), ("letter.pdf", LETTER_PDF)]
    watched.assert_clean()
