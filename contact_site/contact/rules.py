"""The rules that make a field's input safe to store and mail, each answering in words.

Every declared field of a type gets that type's rules (contact/fields.py); the
words name the field by its label, or, for the fields with a fixed meaning, by the
phrase that reads well in a sentence.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date
from typing import Any
from urllib.parse import urlsplit

from email_validator import EmailNotValidError, validate_email
from flask_babel import LazyString, format_decimal, format_number, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from wtforms.validators import Length, StopValidation, ValidationError

from ..submissions.models import EMAIL_MAX
from .characters import describe_character, hidden_in_line, hidden_in_message

# U+0085, U+2028 and U+2029 end a line for some mail software though they are not Cc.
LINE_SEPARATORS = {"\u0085", "\u2028", "\u2029"}
# How an error names a field with a fixed meaning (its label alone reads oddly in a sentence).
FIELD_WORDS = {"name": _l("Your name"), "email": _l("Your email address"),
               "subject": _l("The subject"), "message": _l("Your message")}
# email-validator explains a refusal in English only: other languages get the example instead.
EXPLAINED_IN = "en"
# Digits, spaces and the marks telephone numbers are written with, in any country.
TELEPHONE = re.compile(r"\+?[0-9 ()./-]*[0-9][0-9 ()./-]*")
MIN_TELEPHONE_DIGITS = 3


def at_most(message: LazyString, limit: int) -> LazyString:
    """A length limit's message, translated and with the number written for the language."""
    return LazyString(lambda: str(message) % {"max": format_number(limit)})


USE_AT_MOST = _l("Use at most %(max)s characters.")
ADDRESS_TOO_LONG_WORDS = _l("An email address has at most %(max)s characters.")
ADDRESS_TOO_LONG = at_most(ADDRESS_TOO_LONG_WORDS, EMAIL_MAX)


def field_words(field: Any) -> str:
    """The field named in a sentence: its fixed phrase, else its label."""
    return str(FIELD_WORDS.get(field.name, field.label.text))


class AtMost(Length):
    """A field's length bound that ends its checks: no later rule ever sees longer text.

    WTForms' Length raises ValidationError, after which the field's other validators
    still run, each on text of any size; StopValidation ends the chain here.
    """

    def __init__(self, limit: int, message: LazyString) -> None:
        super().__init__(max=limit, message=at_most(message, limit))

    def __call__(self, form: Any, field: Any) -> None:
        try:
            super().__call__(form, field)
        except ValidationError as error:
            raise StopValidation(error.args[0]) from None


def strip(value: Any) -> Any:
    """Spaces only: a line break at either end is refused, not quietly removed."""
    return value.strip(" ") if isinstance(value, str) else value


def one_space(value: Any) -> Any:
    """A display name's runs of spaces would not survive a mail reader's parsing alike."""
    return " ".join(part for part in value.split(" ") if part) if isinstance(value, str) else value


def newlines(value: Any) -> Any:
    """Browsers send CRLF yet count it as one character against maxlength; so do we."""
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


def hidden_character(field: Any, text: str, pos: int) -> ValidationError:
    """The refusal of an invisible character, naming the field, the character and its place."""
    return ValidationError(_(
        "%(field)s contains an invisible or text-direction character, %(character)s, at "
        "character %(position)s. Such characters can hide or reorder what you wrote: type the "
        "text again without it.", field=field_words(field),
        character=describe_character(text[pos]), position=pos + 1))


def single_line(_form: Any, field: Any) -> None:
    """Refuse line breaks, control and invisible characters: they forge headers, disguise text."""
    value = field.data or ""
    # StopValidation: the field's own rule (address, number, option) would only add a
    # second message about the same character.
    if any(unicodedata.category(c) in {"Cc", "Zl", "Zp"} or c in LINE_SEPARATORS for c in value):
        raise StopValidation(_("Use a single line without line breaks or control characters."))
    pos = hidden_in_line(value)
    if pos is not None:
        raise StopValidation(hidden_character(field, value, pos).args[0])


def no_control_characters(_form: Any, field: Any) -> None:
    """Multi-line text: tabs and line breaks, but no other controls, reordering or tags."""
    value = field.data or ""
    if any(unicodedata.category(c) == "Cc" and c not in "\t\r\n" for c in value):
        if field.name == "message":
            raise ValidationError(_("Remove the control characters from your message."))
        raise ValidationError(_("Remove the control characters from “%(field)s”.",
                                field=field_words(field)))
    pos = hidden_in_message(value)
    if pos is not None:
        raise hidden_character(field, value, pos)


def invalid_address(error: EmailNotValidError) -> str:
    """Why an address was refused: email-validator's reason where it speaks the language."""
    locale = get_locale()
    if locale is not None and locale.language == EXPLAINED_IN:
        return str(_("Enter a valid email address. %(reason)s", reason=str(error)))
    return str(_("Enter a valid email address, such as name@example.com."))


def email_address(_form: Any, field: Any) -> None:
    """One real-looking address; its domain kept in ASCII form. A part before the @ in
    other scripts (`用户@例子.中国`) is valid: mails to it go with SMTPUTF8 (RFC 6531)."""
    if not field.data:
        return
    try:
        # strict: RFC 5321's 64 octets before the @ (254 in all is always checked).
        result = validate_email(
            field.data, check_deliverability=False, allow_smtputf8=True,
            allow_display_name=False, allow_domain_literal=False, strict=True,
        )
    except EmailNotValidError as error:
        raise ValidationError(invalid_address(error)) from None
    address = result.ascii_email or f"{result.local_part}@{result.ascii_domain}"
    if len(address.encode()) > EMAIL_MAX:  # an IDN domain grows when written in ASCII
        raise ValidationError(str(ADDRESS_TOO_LONG))
    field.data = address


def telephone(_form: Any, field: Any) -> None:
    """Digits with the usual marks (+, spaces, brackets, dots, dashes, slashes)."""
    value = field.data or ""
    digits = sum(c.isdigit() for c in value)
    if value and (not TELEPHONE.fullmatch(value) or digits < MIN_TELEPHONE_DIGITS):
        raise ValidationError(_("Enter a telephone number using digits and + ( ) - . / only."))


def web_address(_form: Any, field: Any) -> None:
    """An http(s) address with a host: what a person can open from the owner's mail."""
    value = field.data or ""
    if not value:
        return
    try:
        parts = urlsplit(value)
        valid = parts.scheme in {"http", "https"} and bool(parts.hostname) and " " not in value
        parts.port  # noqa: B018 (a bad port raises here)
    except ValueError:
        valid = False
    if not valid:
        raise ValidationError(_("Enter a web address that starts with http:// or https://, "
                                "such as https://www.example.com/."))


class NumberWithin:
    """A number (the decimal point a dot), within the declared bounds; stored as a number."""

    def __init__(self, low: float | None, high: float | None) -> None:
        self.low, self.high = low, high

    def __call__(self, _form: Any, field: Any) -> None:
        text = (field.data or "").strip()
        if not text:
            field.data = None
            return
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or len(text) > 40:
            raise StopValidation(_("Enter a number, such as 12 or 3.5."))
        if (self.low is not None and number < self.low) or (
                self.high is not None and number > self.high):
            raise StopValidation(self.out_of_bounds())
        field.data = int(number) if number.is_integer() and "." not in text else number

    def out_of_bounds(self) -> str:
        """Which numbers are taken, in words."""
        low = format_decimal(self.low) if self.low is not None else None
        high = format_decimal(self.high) if self.high is not None else None
        if low is not None and high is not None:
            return str(_("Enter a number from %(min)s to %(max)s.", min=low, max=high))
        if low is not None:
            return str(_("Enter a number of at least %(min)s.", min=low))
        return str(_("Enter a number of at most %(max)s.", max=high))


def real_date(_form: Any, field: Any) -> None:
    """A real calendar date written YYYY-MM-DD, as a date input sends it."""
    text = (field.data or "").strip()  # bounded: the request's text is (limits.py)
    if not text:
        field.data = None
        return
    try:
        if len(text) != len("2026-12-31"):
            raise ValueError(text)
        field.data = date.fromisoformat(text).isoformat()
    except ValueError:
        raise StopValidation(_("Enter a real date, such as 2026-12-31.")) from None


class Required:
    """Something given (text, a ticked box, an option); its message names what is missing."""

    field_flags = {"required": True}

    def __init__(self, message: LazyString | str) -> None:
        self.message = message

    def __call__(self, _form: Any, field: Any) -> None:
        data = field.data
        if data is None or data is False or (isinstance(data, str) and not data.strip()) or (
                isinstance(data, list) and not any(getattr(f, "filename", None) for f in data)):
            field.errors[:] = []
            raise StopValidation(str(self.message))


def required_message(name: str, kind: str, label: str) -> str:
    """What a required field says when left empty, in the request's language."""
    fixed = {"recipient": _("Choose who to write to."), "email": _("Enter your email address."),
             "subject": _("Enter a subject."), "message": _("Enter your message.")}
    if name in fixed:
        return str(fixed[name])
    if kind == "select":
        return str(_("Choose an option for “%(field)s”.", field=label))
    if kind in {"checkbox", "consent"}:
        return str(_("Tick “%(field)s” to continue.", field=label))
    if kind == "file":
        return str(_("Choose a file for “%(field)s”.", field=label))
    return str(_("Fill in “%(field)s”.", field=label))
