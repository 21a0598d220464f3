"""The form's rules, field by field: limits, invisible characters, and scripts kept intact.

Each row is posted as a browser would (JSON answers, to read the errors by field);
a refused post answers 422 naming the field and stores nothing, an accepted one
stores the text exactly as typed.
"""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from contact_site.extensions import db
from contact_site.submissions.models import Submission
from support.forms import VALID, post_form

# An app whose mails stay queued: these tests read the stored rows.
pytestmark = pytest.mark.manual_delivery


def stored(app) -> list[Submission]:
    """Every stored submission, detached."""
    with app.app_context():
        found = list(db.session.scalars(select(Submission)))
        db.session.expunge_all()
        return found


def count(app) -> int:
    """How many submissions were stored."""
    with app.app_context():
        return int(db.session.scalar(select(func.count()).select_from(Submission)) or 0)


def refused(client, app, field: str, value: str) -> list[str]:
    """Post one field's value; assert a 422 about that field alone, nothing stored; its errors."""
    response = post_form(client, json=True, **{field: value})
    assert response.status_code == 422, response.get_data(as_text=True)
    errors = response.get_json()["errors"]
    assert list(errors) == [field]
    assert count(app) == 0
    return list(errors[field])


def accepted(client, app, **fields: str) -> Submission:
    """Post these fields; assert a 202 and return the one stored submission."""
    response = post_form(client, json=True, **fields)
    assert response.status_code == 202, response.get_data(as_text=True)
    [submission] = stored(app)
    return submission


LIMITS_REFUSED = [
    ("name", "n" * 101, "Use at most 100 characters."),
    ("name", "Eve\nBcc: x@example.com", "single line"),
    ("name", "Eve\x00", "single line"),
    ("email", "", "Enter your email address."),
    ("email", "not-an-address", "Enter a valid email address."),
    ("email", "x" * 64 + "@" + "d" * 63 + "." + "e" * 63 + "." + "f" * 60 + ".com",
     "at most 254 characters"),
    ("email", "ada@example.com\r\nBcc: victim@example.com", "single line"),
    ("subject", "", "Enter a subject."),
    ("subject", "s" * 201, "Use at most 200 characters."),
    ("subject", "Hi\u2028there", "single line"),
    ("subject", "Hi\u0085there", "single line"),
    ("message", "", "Enter your message."),
    ("message", "m" * 10_001, "Use at most 10,000 characters."),
    ("message", "bell\x07", "Remove the control characters"),
    ("recipient", "ceo", "Choose who to write to."),
]


@pytest.mark.parametrize(("field", "value", "words"), LIMITS_REFUSED)
def test_value_past_a_limit_is_refused_with_its_reason(client, app, field, value, words):
    assert words in " ".join(refused(client, app, field, value))


LIMITS_ACCEPTED = [
    ("name", "n" * 100), ("name", ""), ("subject", "s" * 200), ("subject", "s"),
    ("message", "m" * 10_000), ("message", "line one\r\nline two\ttabbed"),
]


@pytest.mark.parametrize(("field", "value"), LIMITS_ACCEPTED)
def test_value_at_a_limit_is_accepted(client, app, field, value):
    submission = accepted(client, app, **{field: value})
    assert getattr(submission, field) == value.replace("\r\n", "\n")


INVISIBLE = [
    ("\u202a", "LEFT-TO-RIGHT EMBEDDING"), ("\u202b", "RIGHT-TO-LEFT EMBEDDING"),
    ("\u202c", "POP DIRECTIONAL FORMATTING"), ("\u202d", "LEFT-TO-RIGHT OVERRIDE"),
    ("\u202e", "RIGHT-TO-LEFT OVERRIDE"), ("\u2066", "LEFT-TO-RIGHT ISOLATE"),
    ("\u2067", "RIGHT-TO-LEFT ISOLATE"), ("\u2068", "FIRST STRONG ISOLATE"),
    ("\u2069", "POP DIRECTIONAL ISOLATE"), ("\u200e", "LEFT-TO-RIGHT MARK"),
    ("\u200f", "RIGHT-TO-LEFT MARK"), ("\u061c", "ARABIC LETTER MARK"),
    ("\u200b", "ZERO WIDTH SPACE"), ("\ufeff", "ZERO WIDTH NO-BREAK SPACE"),
    ("\u2060", "WORD JOINER"), ("\u2061", "FUNCTION APPLICATION"),
    ("\u2064", "INVISIBLE PLUS"), ("\u00ad", "SOFT HYPHEN"),
    ("\u180e", "MONGOLIAN VOWEL SEPARATOR"), ("\ufff9", "INTERLINEAR ANNOTATION ANCHOR"),
    ("\U000e0001", "LANGUAGE TAG"), ("\U000e0041", "TAG LATIN CAPITAL LETTER A"),
    ("\U000e007f", "CANCEL TAG"), ("\u3164", "HANGUL FILLER"),
    ("\u200d", "ZERO WIDTH JOINER"), ("\u200c", "ZERO WIDTH NON-JOINER"),
]
# How each single-line field is named in its error, and a value to hide a character in.
# (The recipient is a choice: anything but one of its values is "Choose who to write to.")
SINGLE_LINE = {
    "name": ("Your name", "Ada{}Lovelace"),
    "subject": ("The subject", "Invoice {}FDP.exe"),
    "email": ("Your email address", "ada{}@example.com"),
}


@pytest.mark.parametrize("field", SINGLE_LINE)
@pytest.mark.parametrize(("char", "unicode_name"), INVISIBLE)
def test_invisible_character_in_a_single_line_field_is_refused_naming_it(
        client, app, field, char, unicode_name):
    words, template = SINGLE_LINE[field]
    errors = " ".join(refused(client, app, field, template.format(char)))
    assert f"{words} contains an invisible or text-direction character" in errors
    assert f"U+{ord(char):04X} ({unicode_name})" in errors


JOINERS_REFUSED = [
    "Ada\u200dLovelace",  # ZWJ between Latin letters
    "\u200cAda",  # ZWNJ with nothing before it
    "Ada \u200c Lovelace",  # ZWNJ between spaces
    "\u0645\u200d\u062d\u0645\u062f",  # ZWJ in Arabic: no virama, and not a ZWNJ
    "\U0001f469\u200dAda",  # ZWJ from an emoji to a letter
]


@pytest.mark.parametrize("value", JOINERS_REFUSED)
def test_joiner_where_no_script_needs_it_is_refused(client, app, value):
    assert "invisible or text-direction character" in " ".join(refused(client, app, "name", value))


SCRIPTS = [
    "محمد بن موسى الخوارزمي",  # Arabic
    "مرحبا Ada، كيف حالك؟",  # Arabic mixed with Latin
    "עדה לאבלייס",  # Hebrew
    "שלום (Ada) 2026",  # Hebrew, Latin, digits
    "李雷 和 韩梅梅",  # Chinese
    "发票 2026-05 第3号",  # Chinese with digits
    "علی\u200cاکبر",  # Persian, ZWNJ between joining letters
    "می\u200cخواهم",  # Persian verb prefix with ZWNJ
    "क्\u200dष",  # Devanagari, ZWJ after a virama
    "ශ්\u200dරී ලංකා",  # Sinhala, ZWJ after the al-lakuna
    "\U0001f469\u200d\U0001f4bb Ada",  # emoji ZWJ sequence
    "\U0001f3f3\ufe0f\u200d\U0001f308",  # emoji with a presentation selector
    "Zoë Ñúñez-Øberg",  # Latin with diacritics
]


@pytest.mark.parametrize("text", SCRIPTS)
@pytest.mark.parametrize("field", ["name", "subject", "message"])
def test_text_in_any_script_is_stored_intact(client, app, field, text):
    assert getattr(accepted(client, app, **{field: text}), field) == text


MESSAGE_REFUSED = ["\u202a", "\u202b", "\u202c", "\u202d", "\u202e",
                   "\u2066", "\u2067", "\u2068", "\u2069", "\U000e0041", "\U000e0001"]


@pytest.mark.parametrize("char", MESSAGE_REFUSED)
def test_message_refuses_controls_that_reorder_text_and_hidden_tags(client, app, char):
    errors = " ".join(refused(client, app, "message", f"Pay to{char} account 1234"))
    assert "Your message contains an invisible or text-direction character" in errors
    assert f"U+{ord(char):04X}" in errors


MESSAGE_ACCEPTED = [
    "Mixed \u200fעברית\u200f and \u200eEnglish\u200e marks",  # RLM/LRM marks
    "Thai\u200bword\u200bbreaks",  # zero-width spaces between words
    "Persian می\u200cخواهم",  # ZWNJ
    "Flag of Scotland: \U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",
]


@pytest.mark.parametrize("text", MESSAGE_ACCEPTED)
def test_message_keeps_marks_joiners_and_emoji_flags(client, app, text):
    assert accepted(client, app, message=text).message == text


def test_email_is_kept_in_its_ascii_form(client, app):
    assert accepted(client, app, email="ada@b\u00fccher.example.com").email == (
        "ada@xn--bcher-kva.example.com")


def test_runs_of_spaces_in_the_name_become_one(client, app):
    assert accepted(client, app, name="  Ada   Lovelace ").name == "Ada Lovelace"


def test_recipient_may_be_any_of_the_configured_ones(client, app):
    assert accepted(client, app, recipient="support-team").recipient_address == (
        "support@example.com")


def test_valid_form_stores_every_field_as_typed(client, app):
    submission = accepted(client, app)
    assert (submission.name, submission.email, submission.subject) == (
        VALID["name"], VALID["email"], VALID["subject"])
    assert submission.message == VALID["message"]


# Over its length limit and holding what a later rule refuses: the length alone is said.
OVER_THE_LIMIT = [
    ("name", "Ada\u202e" + "n" * 100, "Use at most 100 characters."),
    ("email", "\u202e" + "x" * 250 + "@example.com",
     "An email address has at most 254 characters."),
    ("subject", "Invoice \u202eFDP.exe " + "s" * 200, "Use at most 200 characters."),
    ("message", "bell\x07 \u202e" + "m" * 10_000, "Use at most 10,000 characters."),
]


@pytest.mark.parametrize(("field", "value", "words"), OVER_THE_LIMIT)
def test_a_value_over_its_limit_gets_the_length_error_alone(client, app, field, value, words):
    """The length bound ends the field's checks: no later rule sees over-long text."""
    assert refused(client, app, field, value) == [words]
