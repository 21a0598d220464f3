"""The site in the visitor's language (docs/languages.md), end to end: pages, answers, error
pages, mails.

English and Chinese, the language chosen by `?lang=` (then remembered), the cookie,
Accept-Language or the default; mails received by the real SMTP test server and parsed;
the owner's mail and the console in CONTACT_OWNER_LANGUAGE whatever the visitor's.
"""

from __future__ import annotations

import io
import re
import shutil
import subprocess
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.datastructures import MultiDict

from contact_site.admin.forms import EraseForm
from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.databases import sqlite_file, sqlite_locked
from support.forms import PDF_BYTES_FOR_TESTS, form_tokens, post_form
from support.outbox import deliver_now
from support.settings import skip_or_fail
from support.smtp_server import SMTPTestServer

# What each language says where a test looks; each phrase from the catalogue, as shown.
WORDS = {
    "en": {"html_lang": "en", "heading": "Send a message", "email_label": "Your email address",
           "required_marker": "(required)", "enter_message": "Enter your message.",
           "email_invalid": "Enter a valid email address.",
           "privacy": "We keep your message, name and address for 180 days",
           "thanks": "What happens next", "not_found": "Page not found",
           "too_large": "The file is larger than the limit of 1 MB.",
           "rate_limited": "Please wait a while before sending another one.",
           "not_sent": "Nothing was sent. Please try again in a moment.",
           "expired": "security token had expired or was not valid, so nothing was sent.",
           "csrf_json": "The form's security token is missing or has expired.",
           "thank_you_subject": "Thank you for your message",
           "thank_you_body": "It has been passed on, and you will get an answer by email",
           "pdf": "Thank you for your message",
           "owner_body": "wrote through the contact form to Sales."},
    "zh": {"html_lang": "zh-Hans", "heading": "给我们留言", "email_label": "您的电子邮箱地址",
           "required_marker": "（必填）", "enter_message": "请输入留言内容。",
           "email_invalid": "请输入有效的电子邮箱地址，例如 name@example.com。",
           "privacy": "为便于回复您，我们会将您的留言、姓名和地址保存 180 天",
           "thanks": "接下来", "not_found": "找不到页面",
           "too_large": "文件超过了 1 MB 的大小上限。",
           "rate_limited": "请稍候片刻，再发送下一条。",
           "not_sent": "留言未能发送，请稍后再试。",
           "expired": "表单的安全令牌已过期或无效",
           "csrf_json": "表单的安全令牌缺失或已过期。",
           "thank_you_subject": "感谢您的留言",
           "thank_you_body": "我们已将其转交给相关人员，对方会尽快通过电子邮件回复您。",
           "pdf": "感谢您的留言",
           "owner_body": "通过联系表单给 Sales 发来了留言。"},
}
LANGUAGES = list(WORDS)
ACCEPT = {"en": "en-GB,en;q=0.9", "zh": "zh-CN,zh;q=0.9,en;q=0.4"}
# Settings that keep the spam checks (docs/spam-verdicts.md) from holding back the thank-you mail.
PLAIN_POSTS = {"CONTACT_PROOF_OF_WORK": "off", "CONTACT_MIN_FILL_SECONDS": 0}


def choose(client: FlaskClient, how: str, language: str) -> None:
    """Make the client's later requests ask for `language` in a way docs/languages.md lists."""
    if how == "query":  # the answer's cookie carries the choice to the next pages
        assert client.get(f"/?lang={language}").status_code == 200
    elif how == "cookie":
        client.set_cookie("lang", language)
    else:
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = ACCEPT[language]


def html_lang(page: str) -> str:
    """The page's <html lang> value."""
    found = re.search(r'<html lang="([^"]+)">', page)
    assert found is not None, "no <html lang>"
    return found.group(1)


def language_links(page: str) -> list[dict[str, str]]:
    """The links of the language switcher, as attribute dictionaries plus their text."""
    nav = re.search(r'<nav class="language-links"[^>]*>(.*?)</nav>', page, re.S)
    if nav is None:
        return []
    links = []
    for attributes, text in re.findall(r"<a ([^>]*)>([^<]*)</a>", nav.group(1)):
        link = dict(re.findall(r'([\w-]+)="([^"]*)"', attributes))
        links.append({**link, "text": text})
    return links


def received(smtp_server: SMTPTestServer, count: int = 2) -> dict[str, EmailMessage]:
    """The received mails by their envelope recipient."""
    return {mail.rcpt_tos[0]: mail.message for mail in smtp_server.wait_for(count)}


def text_body(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def html_body(message: EmailMessage) -> str:
    body = message.get_body(("html",))
    assert body is not None
    return str(body.get_content())


def pdf_attachment(message: EmailMessage) -> tuple[str, bytes]:
    """The one attachment of a thank-you mail: its file name and bytes."""
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_content_type() == "application/pdf"
    return str(attachment.get_filename()), bytes(attachment.get_content())


def pdf_text(data: bytes, folder: Path) -> str:
    """What poppler's pdftotext reads from the PDF's bytes, whitespace removed."""
    if shutil.which("pdftotext") is None:
        skip_or_fail("pdftotext missing (apt-get install poppler-utils)")
    path = folder / "received.pdf"
    path.write_bytes(data)
    result = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"],
                            capture_output=True, check=True, timeout=30)
    return re.sub(r"\s+", "", result.stdout.decode("utf-8"))


@pytest.fixture
def site(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """Apps whose posts are judged by the form alone, without the spam checks' timing."""
    def build(deliver: bool = False, **settings: Any) -> Flask:
        return make_app(deliver=deliver, **{**PLAIN_POSTS, **settings})
    return build


# -- choosing the language --------------------------------------------------------------

@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("how", ["query", "cookie", "accept"])
def test_the_page_is_written_in_the_language_chosen_each_way(
        site: Callable[..., Flask], how: str, language: str) -> None:
    client = site().test_client()
    choose(client, how, language)
    page = client.get("/").get_data(as_text=True)
    words = WORDS[language]
    assert html_lang(page) == words["html_lang"]
    for key in ("heading", "email_label", "required_marker", "privacy"):
        assert words[key] in page, key
    other = WORDS["zh" if language == "en" else "en"]
    assert other["heading"] not in page and other["privacy"] not in page


def test_without_any_choice_the_first_of_contact_languages_is_used(
        site: Callable[..., Flask]) -> None:
    assert html_lang(site().test_client().get("/").get_data(as_text=True)) == "en"
    chinese_first = site(CONTACT_LANGUAGES="zh,en").test_client().get("/")
    assert html_lang(chinese_first.get_data(as_text=True)) == "zh-Hans"


def test_lang_in_the_query_is_remembered_in_a_cookie(site: Callable[..., Flask]) -> None:
    client = site().test_client()
    answer = client.get("/?lang=zh")
    assert re.search(r"\blang=zh;.*HttpOnly", answer.headers["Set-Cookie"])
    assert html_lang(client.get("/thanks").get_data(as_text=True)) == "zh-Hans"
    client.get("/?lang=en")
    assert html_lang(client.get("/").get_data(as_text=True)) == "en"


@pytest.mark.parametrize("query, cookie, accept, expected", [
    ("zh", "en", ACCEPT["en"], "zh-Hans"),   # ?lang= first
    (None, "zh", ACCEPT["en"], "zh-Hans"),   # then the cookie
    (None, None, ACCEPT["zh"], "zh-Hans"),   # then Accept-Language
    ("fr", "xx", "de-DE,fr;q=0.8", "en"),    # nothing offered: the default
    (None, None, "zh-Hans-CN", "zh-Hans"),   # a script and region still find `zh`
])
def test_the_choices_are_taken_in_the_order_of_the_spec(
        site: Callable[..., Flask], query: str | None, cookie: str | None, accept: str,
        expected: str) -> None:
    client = site().test_client()
    if cookie:
        client.set_cookie("lang", cookie)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = accept
    page = client.get(f"/?lang={query}" if query else "/").get_data(as_text=True)
    assert html_lang(page) == expected


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_public_page_links_to_each_language_in_its_own_name(
        site: Callable[..., Flask], language: str) -> None:
    """Plain links (no script needed), the current one marked, each with lang and hreflang."""
    client = site().test_client()
    client.set_cookie("lang", language)
    for path in ("/", "/thanks", "/no-such-page"):
        links = language_links(client.get(path).get_data(as_text=True))
        assert [(link["text"], link["href"], link["lang"], link["hreflang"]) for link in links] == [
            ("English", "?lang=en", "en", "en"), ("中文", "?lang=zh", "zh-Hans", "zh-Hans")]
        assert [link.get("aria-current") for link in links] == [
            "true" if language == "en" else None, "true" if language == "zh" else None]


def test_a_link_to_another_language_opens_the_page_in_it(site: Callable[..., Flask]) -> None:
    client = site().test_client()
    link = language_links(client.get("/thanks").get_data(as_text=True))[1]
    page = client.get("/thanks" + link["href"]).get_data(as_text=True)
    assert html_lang(page) == "zh-Hans" and WORDS["zh"]["thanks"] in page


def test_contact_languages_limits_what_is_offered(site: Callable[..., Flask]) -> None:
    """CONTACT_LANGUAGES=en: no Chinese, whatever the visitor asks for; no switcher at all."""
    client = site(CONTACT_LANGUAGES="en").test_client()
    client.set_cookie("lang", "zh")
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = ACCEPT["zh"]
    page = client.get("/?lang=zh").get_data(as_text=True)
    assert html_lang(page) == "en"
    assert WORDS["zh"]["heading"] not in page and "中文" not in page
    assert language_links(page) == []


# -- the form's answers ----------------------------------------------------------------

@pytest.mark.parametrize("language", LANGUAGES)
def test_refused_fields_are_explained_in_the_page_language(
        site: Callable[..., Flask], language: str) -> None:
    client = site().test_client()
    client.set_cookie("lang", language)
    answer = post_form(client, email="not an address", message="")
    assert answer.status_code == 422
    page = answer.get_data(as_text=True)
    words = WORDS[language]
    assert html_lang(page) == words["html_lang"]
    assert words["enter_message"] in page and words["email_invalid"] in page

    errors = post_form(client, json=True, email="not an address", message="").get_json()
    assert errors["errors"]["message"] == [words["enter_message"]]
    assert errors["errors"]["email"][0].startswith(words["email_invalid"])


@pytest.mark.parametrize("language, expected", [
    ("en", "Use at most 10,000 characters."), ("zh", "最多可输入 10,000 个字符。")])
def test_length_limits_are_written_for_the_language(
        site: Callable[..., Flask], language: str, expected: str) -> None:
    client = site().test_client()
    client.set_cookie("lang", language)
    answer = post_form(client, json=True, message="x" * 10_001)
    assert answer.get_json()["errors"]["message"] == [expected]


@pytest.mark.parametrize("language", LANGUAGES)
def test_upload_refusals_are_in_the_page_language(
        site: Callable[..., Flask], language: str) -> None:
    client = site().test_client()
    client.set_cookie("lang", language)
    answer = post_form(client, json=True, attachment=(io.BytesIO(b""), "empty.pdf"))
    expected = {"en": "The file is empty.", "zh": "文件是空的。"}[language]
    assert answer.get_json()["errors"]["attachment"] == [expected]


@pytest.mark.parametrize("language, expected", [("en", "This field is required."),
                                                ("zh", "该字段是必填字段。")])
def test_wtforms_own_messages_are_translated(
        site: Callable[..., Flask], language: str, expected: str) -> None:
    """Flask-WTF hands WTForms' shipped catalogue the request's locale (WTF_I18N_ENABLED)."""
    app = site()
    with app.test_request_context(f"/?lang={language}"):
        form = EraseForm(formdata=MultiDict({"address": ""}), meta={"csrf": False})
        assert not form.validate()
        assert form.address.errors == [expected]


# -- error pages -----------------------------------------------------------------------

@pytest.mark.parametrize("language", LANGUAGES)
def test_400_for_an_expired_form_is_in_the_page_language(
        site: Callable[..., Flask], language: str) -> None:
    client = site().test_client()
    client.set_cookie("lang", language)
    tokens = {**form_tokens(client), "csrf_token": "expired"}
    page = post_form(client, tokens=tokens)
    assert page.status_code == 400
    assert WORDS[language]["expired"] in page.get_data(as_text=True)
    assert html_lang(page.get_data(as_text=True)) == WORDS[language]["html_lang"]
    answer = post_form(client, json=True, tokens=tokens)
    assert answer.status_code == 400
    assert answer.get_json()["errors"]["csrf_token"][0].startswith(WORDS[language]["csrf_json"])


@pytest.mark.parametrize("language", LANGUAGES)
def test_404_is_in_the_page_language(site: Callable[..., Flask], language: str) -> None:
    client = site().test_client()
    client.set_cookie("lang", language)
    page = client.get("/no-such-page")
    assert page.status_code == 404
    assert WORDS[language]["not_found"] in page.get_data(as_text=True)
    assert html_lang(page.get_data(as_text=True)) == WORDS[language]["html_lang"]
    answer = client.get("/no-such-page", headers={"Accept": "application/json"})
    assert answer.status_code == 404 and answer.get_json()["error"]
    expected = {"en": "The requested URL was not found on the server. If you entered the URL "
                      "manually please check your spelling and try again.",
                "zh": "此网址没有对应的页面。如果网址是您手动输入的，请检查拼写后重试。"}
    assert answer.get_json() == {"error": expected[language]}


@pytest.mark.parametrize("language", LANGUAGES)
def test_413_names_the_limit_in_the_page_language(
        site: Callable[..., Flask], language: str) -> None:
    client = site(CONTACT_MAX_UPLOAD_MB=1).test_client()
    client.set_cookie("lang", language)
    big = PDF_BYTES_FOR_TESTS + b"0" * (3 * 2**20)
    page = post_form(client, attachment=(io.BytesIO(big), "big.pdf"))
    assert page.status_code == 413
    assert WORDS[language]["too_large"] in page.get_data(as_text=True)
    answer = post_form(client, json=True, attachment=(io.BytesIO(big), "big.pdf"))
    assert answer.status_code == 413
    assert answer.get_json()["errors"]["attachment"] == [WORDS[language]["too_large"]]


@pytest.mark.parametrize("language", LANGUAGES)
def test_429_is_in_the_page_language(site: Callable[..., Flask], language: str) -> None:
    client = site(CONTACT_RATE_LIMIT="1 per minute").test_client()
    client.set_cookie("lang", language)
    assert post_form(client, email="not an address").status_code == 422
    page = post_form(client)
    assert page.status_code == 429 and "Retry-After" in page.headers
    assert WORDS[language]["rate_limited"] in page.get_data(as_text=True)
    assert html_lang(page.get_data(as_text=True)) == WORDS[language]["html_lang"]
    answer = post_form(client, json=True)
    assert answer.status_code == 429
    assert WORDS[language]["rate_limited"] in answer.get_json()["error"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_503_when_the_database_is_locked_is_in_the_page_language(
        site: Callable[..., Flask], language: str) -> None:
    app = site()
    client = app.test_client()
    client.set_cookie("lang", language)
    tokens = form_tokens(client)
    with sqlite_locked(sqlite_file(app)):
        page = post_form(client, tokens=tokens)
        answer = post_form(client, json=True, tokens=tokens)
    assert page.status_code == answer.status_code == 503
    assert WORDS[language]["not_sent"] in page.get_data(as_text=True)
    assert html_lang(page.get_data(as_text=True)) == WORDS[language]["html_lang"]
    assert answer.get_json() == {"error": WORDS[language]["not_sent"]}


# -- the mails -------------------------------------------------------------------------

@pytest.mark.parametrize("language", LANGUAGES)
def test_the_thank_you_is_written_in_the_visitors_language_and_the_owners_mail_in_english(
        site: Callable[..., Flask], smtp_server: SMTPTestServer, tmp_path: Path,
        language: str) -> None:
    """Subject, both bodies and the PDF in the visitor's language; the PDF keeps its name."""
    app = site(deliver=True)
    client = app.test_client()
    choose(client, "query", language)
    assert post_form(client).status_code == 303
    mails = received(smtp_server)
    thank_you, owner = mails["ada@example.com"], mails["sales@example.com"]
    words = WORDS[language]

    assert thank_you["Subject"] == words["thank_you_subject"]
    assert words["thank_you_body"] in text_body(thank_you)
    assert words["thank_you_body"] in html_body(thank_you)
    assert f'<html lang="{words["html_lang"]}">' in html_body(thank_you)
    name, data = pdf_attachment(thank_you)
    assert name == "thank-you.pdf"
    assert re.sub(r"\s+", "", words["pdf"]) in pdf_text(data, tmp_path)

    assert WORDS["en"]["owner_body"] in text_body(owner)
    assert WORDS["en"]["owner_body"] in html_body(owner)
    with app.app_context():
        assert [s.language for s in db.session.query(Submission)] == [language]


def test_the_chinese_pdf_holds_the_chinese_text_and_no_english(
        site: Callable[..., Flask], smtp_server: SMTPTestServer, tmp_path: Path) -> None:
    client = site(deliver=True).test_client()
    choose(client, "accept", "zh")
    assert post_form(client).status_code == 303
    _, data = pdf_attachment(received(smtp_server)["ada@example.com"])
    text = pdf_text(data, tmp_path)
    assert "感谢您的留言" in text and "我们已收到您的留言" in text
    assert "Thankyou" not in text


@pytest.mark.parametrize("visitor", LANGUAGES)
def test_the_owners_mail_is_in_contact_owner_language_whatever_the_visitors(
        site: Callable[..., Flask], smtp_server: SMTPTestServer, visitor: str) -> None:
    client = site(deliver=True, CONTACT_OWNER_LANGUAGE="zh").test_client()
    choose(client, "cookie", visitor)
    assert post_form(client).status_code == 303
    mails = received(smtp_server)
    owner = mails["sales@example.com"]
    assert WORDS["zh"]["owner_body"] in text_body(owner)
    assert WORDS["zh"]["owner_body"] in html_body(owner)
    assert "wrote through" not in text_body(owner)
    assert mails["ada@example.com"]["Subject"] == WORDS[visitor]["thank_you_subject"]


def test_a_language_no_longer_offered_falls_back_to_the_default_for_the_thank_you(
        site: Callable[..., Flask], smtp_server: SMTPTestServer) -> None:
    """A submission stored in zh, delivered by a site that now offers only en: English."""
    app = site(deliver=False, CONTACT_LANGUAGES="en")
    client = app.test_client()
    assert post_form(client).status_code == 303
    with app.app_context():
        submission = db.session.query(Submission).one()
        submission.language = "zh"
        db.session.commit()
    deliver_now(app)
    assert received(smtp_server)["ada@example.com"]["Subject"] == WORDS["en"]["thank_you_subject"]


# -- the console -----------------------------------------------------------------------

@pytest.mark.parametrize("owner, expected, words", [
    ("en", "en", "Sign in to the console"), ("zh", "zh-Hans", "登录管理后台")])
def test_the_console_uses_contact_owner_language_whatever_the_visitor_asks(
        site: Callable[..., Flask], owner: str, expected: str, words: str) -> None:
    client = site(CONTACT_OWNER_LANGUAGE=owner).test_client()
    other = "zh" if owner == "en" else "en"
    client.set_cookie("lang", other)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = ACCEPT[other]
    page = client.get(f"/admin/login?lang={other}").get_data(as_text=True)
    assert html_lang(page) == expected and words in page
    assert language_links(page) == []
