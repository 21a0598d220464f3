"""Every field type's rules, as a visitor meets them: values posted to /f/<slug> of a declared
form, accepted (and stored as what) or refused with the words of its field (English and,
where the catalogue has them, Chinese)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from email_validator import EmailNotValidError, validate_email
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from contact_site.extensions import db
from contact_site.submissions.answers import answers_of
from contact_site.submissions.models import Submission
from support.files import PDF
from support.forms_files import EVERY_TYPE, post_declared, write_forms

FORM = "/f/kinds"
# The fields each post fills in unless a case says otherwise: what the form requires.
REQUIRED = {"email": "ada@example.com", "agree": "y", "terms": "y"}
MIB = 2**20

SINGLE_LINE = "Use a single line without line breaks or control characters."
NOT_A_PHONE = "Enter a telephone number using digits and + ( ) - . / only."
NOT_A_URL = ("Enter a web address that starts with http:// or https://, "
             "such as https://www.example.com/.")
NOT_A_NUMBER = "Enter a number, such as 12 or 3.5."
OUT_OF_BOUNDS = "Enter a number from 1 to 10."
NOT_A_DATE = "Enter a real date, such as 2026-12-31."
NOT_AN_OPTION = "Choose one of the options offered."
CONTROLS_IN_TEXT = "Remove the control characters from “Notes”."


def invisible(field: str, character: str, position: int) -> str:
    """The refusal of an invisible or direction character, as the visitor reads it."""
    return (f"{field} contains an invisible or text-direction character, {character}, at "
            f"character {position}. Such characters can hide or reorder what you wrote: type "
            "the text again without it.")


def invisible_zh(field: str, character: str, position: int) -> str:
    """The same refusal in Chinese."""
    return (f"{field}的第 {position} 个字符是不可见字符或文字方向控制字符 {character}。"
            "这类字符可能隐藏或打乱您输入的内容，请去掉该字符后重新输入。")


def validator_reason(address: str) -> str:
    """Why email-validator itself refuses this address (its own words, in English)."""
    with pytest.raises(EmailNotValidError) as refused:
        validate_email(address, check_deliverability=False)
    return f"Enter a valid email address. {refused.value}"


def kinds_app(make_app: Callable[..., Flask], tmp_path: Path) -> Flask:
    """An app serving the form with a field of every type (no delivery: nothing is mailed)."""
    return make_app(deliver=False, CONTACT_FORMS_FILE=str(write_forms(tmp_path / "site",
                                                                      EVERY_TYPE)))


def post(client: FlaskClient, fields: dict[str, str | None], language: str = "en",
         files: tuple[tuple[str, bytes, str], ...] = ()) -> Any:
    """POST the form as JSON client with the required fields filled in, `fields` over them."""
    return post_declared(client, FORM, {**REQUIRED, **fields}, files=files, language=language)


def stored_answers(app: Flask, submission_id: str) -> dict[str, Any]:
    """The stored submission's value of each field, by name."""
    with app.app_context():
        submission = db.session.get(Submission, submission_id)
        assert submission is not None
        return {answer.name: answer.value for answer in answers_of(submission)}


def submission_count(app: Flask) -> int:
    """How many submissions are stored."""
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(Submission)) or 0)


# (field, posted, stored value)
ACCEPTED = {
    "text: plain words": ("line", "Ada Lovelace", "Ada Lovelace"),
    "text: other scripts": ("line", "Zoë 李 ✓", "Zoë 李 ✓"),
    "text: spaces around trimmed": ("line", "  engines  ", "engines"),
    "text: exactly max_length": ("line", "x" * 20, "x" * 20),
    "text: empty when optional": ("line", "", ""),
    "textarea: lines and a tab": ("notes", "two\nlines\tand a tab", "two\nlines\tand a tab"),
    "textarea: CRLF kept as one line break": ("notes", "a\r\nb", "a\nb"),
    "textarea: max_length counting CRLF once": ("notes", "x\r\n" * 16 + "xx",
                                                "x\n" * 16 + "xx"),
    "email: plain": ("email", "ada@example.com", "ada@example.com"),
    "email: another script before the @ (SMTPUTF8), the domain in ASCII": (
        "email", "用户@例子.中国", "用户@xn--fsqu00a.xn--fiqs8s"),
    "email: domain in lower case": ("email", "Ada.Lovelace+engines@Example.COM",
                                    "Ada.Lovelace+engines@example.com"),
    "email: international domain in ASCII": ("email", "ada@bücher.example",
                                             "ada@xn--bcher-kva.example"),
    "tel: international": ("phone", "+44 (0)20 7946 0958", "+44 (0)20 7946 0958"),
    "tel: dots, dashes, slashes": ("phone", "030/123.456-78", "030/123.456-78"),
    "url: https with path, query, fragment": ("homepage", "https://www.example.com/a?b=1#c",
                                              "https://www.example.com/a?b=1#c"),
    "url: http with a port": ("homepage", "http://localhost:8080/", "http://localhost:8080/"),
    "number: the minimum": ("count", "1", 1),
    "number: the maximum": ("count", "10", 10),
    "number: a decimal": ("count", "3.5", 3.5),
    "number: spaces trimmed": ("count", " 7 ", 7),
    "number: written with a point stays decimal": ("count", "7.0", 7.0),
    "number: exponent": ("count", "1e1", 10),
    "number: empty when optional": ("count", "", None),
    "date: a real date": ("day", "2026-12-31", "2026-12-31"),
    "date: 29 February of a leap year": ("day", "2028-02-29", "2028-02-29"),
    "date: empty when optional": ("day", "", None),
    "select: an option": ("colour", "green", "green"),
    "select: empty when optional": ("colour", "", None),
    "checkbox: ticked": ("news", "y", True),
    "checkbox: not ticked when optional": ("news", None, False),
    "required checkbox: ticked as browsers send it": ("agree", "on", True),
    "consent: ticked": ("terms", "y", True),
}


@pytest.mark.parametrize(("field", "posted", "stored"), ACCEPTED.values(), ids=ACCEPTED.keys())
def test_accepted_values_are_stored_as_their_type(
        make_app: Callable[..., Flask], tmp_path: Path, field: str, posted: str | None,
        stored: Any) -> None:
    """202, and the stored answer holds the value as its type keeps it."""
    app = kinds_app(make_app, tmp_path)
    response = post(app.test_client(), {field: posted})
    assert response.status_code == 202, response.get_json()
    value = stored_answers(app, response.get_json()["id"])[field]
    assert value == stored
    assert type(value) is type(stored)


# (field, posted, the field's first message). A select takes only its options' values, so a
# line break in one is simply not an option.
REFUSED = {
    "text: a line break": ("line", "two\nlines", SINGLE_LINE),
    "text: a carriage return": ("line", "two\rlines", SINGLE_LINE),
    "text: U+2028 LINE SEPARATOR": ("line", "two\u2028lines", SINGLE_LINE),
    "text: a control character": ("line", "bell\x07", SINGLE_LINE),
    "text: U+202E RIGHT-TO-LEFT OVERRIDE": (
        "line", "ab\u202ecd", invisible("Line", "U+202E (RIGHT-TO-LEFT OVERRIDE)", 3)),
    "text: U+200B ZERO WIDTH SPACE": (
        "line", "a\u200bb", invisible("Line", "U+200B (ZERO WIDTH SPACE)", 2)),
    "text: U+FEFF at the start": (
        "line", "\ufeffAda", invisible("Line", "U+FEFF (ZERO WIDTH NO-BREAK SPACE)", 1)),
    "text: over max_length": ("line", "x" * 21, "Use at most 20 characters."),
    "textarea: over max_length": ("notes", "x" * 51, "Use at most 50 characters."),
    "textarea: a control character": ("notes", "bell\x07", CONTROLS_IN_TEXT),
    "textarea: U+202E RIGHT-TO-LEFT OVERRIDE": (
        "notes", "ab\u202ecd", invisible("Notes", "U+202E (RIGHT-TO-LEFT OVERRIDE)", 3)),
    "email: missing": ("email", "", "Enter your email address."),
    "email: no @": ("email", "not-an-address", validator_reason("not-an-address")),
    "email: space in the domain": ("email", "ada@exa mple.com",
                                   validator_reason("ada@exa mple.com")),
    "email: two @": ("email", "ada@@example.com", validator_reason("ada@@example.com")),
    "email: a domain without a dot": ("email", "ada@localhost", validator_reason("ada@localhost")),
    "email: a line break (header injection)": ("email", "ada@example.com\nBcc: x@example.com",
                                               SINGLE_LINE),
    "email: U+202E": ("email", "ada@\u202eexample.com",
                      invisible("Your email address", "U+202E (RIGHT-TO-LEFT OVERRIDE)", 5)),
    "tel: letters": ("phone", "call me", NOT_A_PHONE),
    "tel: too few digits": ("phone", "12", NOT_A_PHONE),
    "tel: a line break": ("phone", "+1 555\n0100", SINGLE_LINE),
    "tel: U+200B": ("phone", "+1\u200b555 0100",
                    invisible("Phone", "U+200B (ZERO WIDTH SPACE)", 3)),
    "url: ftp": ("homepage", "ftp://example.com/", NOT_A_URL),
    "url: javascript": ("homepage", "javascript:alert(1)", NOT_A_URL),
    "url: no scheme": ("homepage", "www.example.com", NOT_A_URL),
    "url: no host": ("homepage", "https://", NOT_A_URL),
    "url: scheme-relative": ("homepage", "//example.com/", NOT_A_URL),
    "url: mailto": ("homepage", "mailto:ada@example.com", NOT_A_URL),
    "url: a space": ("homepage", "https://exa mple.com/", NOT_A_URL),
    "url: a port out of range": ("homepage", "https://example.com:99999/", NOT_A_URL),
    "url: a line break": ("homepage", "https://example.com/\nx", SINGLE_LINE),
    "number: under min": ("count", "0", OUT_OF_BOUNDS),
    "number: over max": ("count", "11", OUT_OF_BOUNDS),
    "number: just over max": ("count", "10.01", OUT_OF_BOUNDS),
    "number: negative": ("count", "-3", OUT_OF_BOUNDS),
    "number: words": ("count", "five", NOT_A_NUMBER),
    "number: a decimal comma": ("count", "1,5", NOT_A_NUMBER),
    "number: hexadecimal": ("count", "0x5", NOT_A_NUMBER),
    "number: NaN": ("count", "nan", NOT_A_NUMBER),
    "number: infinity": ("count", "inf", NOT_A_NUMBER),
    "number: overflowing to infinity": ("count", "1e400", NOT_A_NUMBER),
    "date: 30 February": ("day", "2026-02-30", NOT_A_DATE),
    "date: 29 February of a common year": ("day", "2026-02-29", NOT_A_DATE),
    "date: month 13": ("day", "2026-13-01", NOT_A_DATE),
    "date: day first": ("day", "31/12/2026", NOT_A_DATE),
    "date: without leading zeros": ("day", "2026-2-3", NOT_A_DATE),
    "date: basic format": ("day", "20260203", NOT_A_DATE),
    "date: slashes": ("day", "2026/12/31", NOT_A_DATE),
    "date: with a time (longer than a date)": ("day", "2026-12-31T10:00", NOT_A_DATE),
    "date: words": ("day", "tomorrow", NOT_A_DATE),
    "select: not an option": ("colour", "blue", NOT_AN_OPTION),
    "select: an option's label": ("colour", "Red", NOT_AN_OPTION),
    "select: an option in capitals": ("colour", "RED", NOT_AN_OPTION),
    "select: a line break": ("colour", "red\nblue", NOT_AN_OPTION),
    "required checkbox: not sent": ("agree", None, "Tick “Agree” to continue."),
    "required checkbox: sent as false": ("agree", "false", "Tick “Agree” to continue."),
    "required checkbox: sent empty": ("agree", "", "Tick “Agree” to continue."),
    "consent: not sent": ("terms", None, "Tick “Terms” to continue."),
}


@pytest.mark.parametrize(("field", "posted", "message"), REFUSED.values(), ids=REFUSED.keys())
def test_refused_values_answer_422_naming_the_field(
        make_app: Callable[..., Flask], tmp_path: Path, field: str, posted: str | None,
        message: str) -> None:
    """422 naming that field alone with one message (no rule runs after the first refuses),
    in English; nothing is stored."""
    app = kinds_app(make_app, tmp_path)
    response = post(app.test_client(), {field: posted})
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert list(errors) == [field]
    assert errors[field] == [message]
    assert submission_count(app) == 0


# Messages the Chinese catalogue has already: (field, posted, message in Chinese)
REFUSED_ZH = {
    "text: a line break": ("line", "two\nlines", "请在一行内填写，不要包含换行符或控制字符。"),
    "text: U+202E, named by its Chinese label": (
        "line", "ab\u202ecd", invisible_zh("单行", "U+202E (RIGHT-TO-LEFT OVERRIDE)", 3)),
    "text: over max_length": ("line", "x" * 21, "最多可输入 20 个字符。"),
    "textarea: a control character": ("notes", "bell\x07", "请删除“备注”中的控制字符。"),
    "email: missing": ("email", "", "请输入您的电子邮箱地址。"),
    "email: no @ (the example, not email-validator's English)": (
        "email", "not-an-address", "请输入有效的电子邮箱地址，例如 name@example.com。"),
}


@pytest.mark.parametrize(("field", "posted", "message"), REFUSED_ZH.values(),
                         ids=REFUSED_ZH.keys())
def test_refusals_are_in_the_visitors_language(
        make_app: Callable[..., Flask], tmp_path: Path, field: str, posted: str,
        message: str) -> None:
    """A visitor reading Chinese is told in Chinese, naming the field by its Chinese label."""
    app = kinds_app(make_app, tmp_path)
    response = post(app.test_client(), {field: posted}, language="zh")
    assert response.status_code == 422
    assert response.get_json() == {"errors": {field: [message]}}


def test_a_required_tick_names_its_chinese_label(
        make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """Left unticked, a required box is named by its label in the visitor's language (the
    sentence around it is in the catalogue's hands: only the label is checked here)."""
    app = kinds_app(make_app, tmp_path)
    response = post(app.test_client(), {"agree": None, "terms": None}, language="zh")
    assert response.status_code == 422
    errors = response.get_json()["errors"]
    assert set(errors) == {"agree", "terms"}
    assert "“同意”" in errors["agree"][0] and "“条款”" in errors["terms"][0]


TEXT = b"Dear team,\nmy notes.\n"


def pdf_of(size: int) -> bytes:
    """A PDF of exactly `size` bytes."""
    return PDF + b"%" * (size - len(PDF))


def test_two_valid_files_are_stored_in_order_byte_for_byte(
        make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """max_files = 2: both files kept, under the field's name, in the order sent."""
    app = kinds_app(make_app, tmp_path)
    response = post(app.test_client(), {}, files=(("docs", PDF, "letter.pdf"),
                                                  ("docs", TEXT, "notes.txt")))
    assert response.status_code == 202, response.get_json()
    with app.app_context():
        submission = db.session.get(Submission, response.get_json()["id"])
        assert submission is not None
        kept = [(f.field, f.position, f.name, f.content_type, f.size) for f in submission.files]
        data = [(tmp_path / "uploads" / str(f.path)).read_bytes() for f in submission.files]
    assert kept == [("docs", 0, "letter.pdf", "application/pdf", len(PDF)),
                    ("docs", 1, "notes.txt", "text/plain; charset=utf-8", len(TEXT))]
    assert data == [PDF, TEXT]
    assert stored_answers(app, response.get_json()["id"])["docs"] == ["letter.pdf", "notes.txt"]


def test_a_file_of_exactly_max_mb_is_accepted(
        make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """max_mb = 1: a file of 1 MiB is within the limit."""
    app = kinds_app(make_app, tmp_path)
    response = post(app.test_client(), {}, files=(("docs", pdf_of(MIB), "big.pdf"),))
    assert response.status_code == 202, response.get_json()


# (files sent, the field's one message): refused with 422, nothing stored.
FILES_REFUSED = {
    "three files where two are allowed": (
        (("docs", PDF, "a.pdf"), ("docs", PDF, "b.pdf"), ("docs", TEXT, "c.txt")),
        "Choose at most 2 files."),
    "an extension the field does not take": (
        (("docs", PDF, "a.pdf"), ("docs", PDF, "evil.exe")),
        "evil.exe: Files of this type are not accepted. Allowed types: pdf, txt."),
    "an extension the site takes but the field does not": (
        (("docs", b"\x89PNG\r\n\x1a\n" + bytes(64), "photo.png"),),
        "photo.png: Files of this type are not accepted. Allowed types: pdf, txt."),
    "content that is not what its extension says": (
        (("docs", TEXT, "letter.pdf"),), "letter.pdf: The file's content is not a .pdf file."),
}


@pytest.mark.parametrize(("files", "message"), FILES_REFUSED.values(), ids=FILES_REFUSED.keys())
def test_refused_files_answer_422_naming_the_field(
        make_app: Callable[..., Flask], tmp_path: Path,
        files: tuple[tuple[str, bytes, str], ...], message: str) -> None:
    """422 with the file field's one message; no submission and no file kept."""
    app = kinds_app(make_app, tmp_path)
    response = post(app.test_client(), {}, files=files)
    assert response.status_code == 422
    assert response.get_json() == {"errors": {"docs": [message]}}
    assert submission_count(app) == 0
    assert not any(p.is_file() for p in (tmp_path / "uploads").rglob("*"))


@pytest.mark.parametrize(("language", "message"), [
    ("en", "The file is larger than the limit of 1 MB."),
    ("zh", "文件超过了 1 MB 的大小上限。"),
])
def test_a_file_over_max_mb_answers_413_naming_the_field(
        make_app: Callable[..., Flask], tmp_path: Path, language: str, message: str) -> None:
    """One byte over the field's max_mb: 413 naming the file field, in the visitor's language."""
    app = kinds_app(make_app, tmp_path)
    response = post(app.test_client(), {}, language=language,
                    files=(("docs", PDF, "small.pdf"), ("docs", pdf_of(MIB + 1), "big.pdf")))
    assert response.status_code == 413
    assert response.get_json() == {"errors": {"docs": [message]}}
    assert submission_count(app) == 0


def test_a_wrong_extension_is_named_in_chinese(
        make_app: Callable[..., Flask], tmp_path: Path) -> None:
    """The refused file's name, then the reason in the visitor's language."""
    app = kinds_app(make_app, tmp_path)
    response = post(app.test_client(), {}, language="zh", files=(("docs", PDF, "evil.exe"),))
    assert response.status_code == 422
    assert response.get_json() == {
        "errors": {"docs": ["evil.exe: 不接受此类型的文件。允许的类型：pdf, txt。"]}}
