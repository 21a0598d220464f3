"""The contact form: fields, limits and the rules that make input safe to mail."""

from __future__ import annotations

import functools
import re
import unicodedata
from typing import Any

from babel import support
from email_validator import EmailNotValidError, validate_email
from flask import current_app, request
from flask_babel import LazyString, format_number, get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from werkzeug.datastructures import CombinedMultiDict, MultiDict
from wtforms import EmailField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.i18n import messages_path
from wtforms.validators import DataRequired, Length, StopValidation, ValidationError

from .. import i18n
from ..config import Recipient
from ..submissions.content import new_submission_key
from ..submissions.files import CheckedUpload
from ..submissions.models import EMAIL_COLUMN, EMAIL_MAX, MESSAGE_MAX, NAME_MAX, SUBJECT_MAX
from . import uploads
from .characters import describe_character, hidden_in_line, hidden_in_message

# U+0085, U+2028 and U+2029 end a line for some mail software though they are not Cc.
LINE_SEPARATORS = {"\u0085", "\u2028", "\u2029"}
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
# Such addresses need SMTPUTF8, which our outgoing path does not offer.
NON_ASCII_LOCAL_PART = _l("Enter an address whose part before the @ uses only the letters a-z, "
                          "digits and . _ + - : we cannot send mail to other characters there.")
# How an error names its field, in words (the labels alone read oddly in a sentence).
FIELD_WORDS = {"recipient": _l("The recipient you chose"), "name": _l("Your name"),
               "email": _l("Your email address"), "subject": _l("The subject"),
               "message": _l("Your message")}
# email-validator explains a refusal in English only: other languages get the example instead.
EXPLAINED_IN = "en"


def at_most(message: LazyString, limit: int) -> LazyString:
    """A length limit's message, translated and with the number written for the language."""
    return LazyString(lambda: str(message) % {"max": format_number(limit)})


USE_AT_MOST = _l("Use at most %(max)s characters.")
ADDRESS_TOO_LONG_WORDS = _l("An email address has at most %(max)s characters.")
ADDRESS_TOO_LONG = at_most(ADDRESS_TOO_LONG_WORDS, EMAIL_MAX)


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


def _strip(value: Any) -> Any:
    # Spaces only: a line break at either end is refused below, not quietly removed.
    return value.strip(" ") if isinstance(value, str) else value


def _one_space(value: Any) -> Any:
    # A display name's runs of spaces would not survive a mail reader's parsing alike.
    return " ".join(part for part in value.split(" ") if part) if isinstance(value, str) else value


def _newlines(value: Any) -> Any:
    # Browsers send CRLF yet count it as one character against maxlength; so do we.
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


def hidden_character(field: Any, text: str, pos: int) -> ValidationError:
    """The refusal of an invisible character, naming the field, the character and its place."""
    return ValidationError(_(
        "%(field)s contains an invisible or text-direction character, %(character)s, at "
        "character %(position)s. Such characters can hide or reorder what you wrote: type the "
        "text again without it.", field=FIELD_WORDS.get(field.name, field.label.text),
        character=describe_character(text[pos]), position=pos + 1))


def single_line(_form: Any, field: Any) -> None:
    """Refuse line breaks, control and invisible characters: they forge headers, disguise text."""
    value = field.data or ""
    if any(unicodedata.category(c) in {"Cc", "Zl", "Zp"} or c in LINE_SEPARATORS for c in value):
        raise ValidationError(_("Use a single line without line breaks or control characters."))
    pos = hidden_in_line(value)
    if pos is not None:
        raise hidden_character(field, value, pos)


def no_control_characters(_form: Any, field: Any) -> None:
    """Multi-line text: tabs and line breaks, but no other controls, reordering or tags."""
    value = field.data or ""
    if any(unicodedata.category(c) == "Cc" and c not in "\t\r\n" for c in value):
        raise ValidationError(_("Remove the control characters from your message."))
    pos = hidden_in_message(value)
    if pos is not None:
        raise hidden_character(field, value, pos)


def invalid_address(error: EmailNotValidError) -> str:
    """Why an address was refused: email-validator's reason where it speaks the language."""
    locale = get_locale()
    if locale is not None and locale.language == EXPLAINED_IN:
        return str(_("Enter a valid email address. %(reason)s", reason=str(error)))
    return str(_("Enter a valid email address, such as name@example.com."))


def posted_fields() -> CombinedMultiDict[str, Any]:
    """The text parts of the posted form, and files from the `attachment` part only."""
    files = MultiDict([("attachment", file) for file in request.files.getlist("attachment")])
    return CombinedMultiDict([files, request.form])


@functools.lru_cache(maxsize=8)
def wtforms_catalogue(locale: str) -> support.NullTranslations:
    """WTForms' built-in messages in this locale (its own catalogue)."""
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


class ContactForm(FlaskForm):
    """What a visitor may send; each rule answers with words a person understands."""

    class Meta(FlaskForm.Meta):
        """Fields read from form-encoded bodies only.

        Flask-WTF would also read a JSON body, and a file part posted under any
        field's name: numbers, objects and files where text belongs crash validators.
        """

        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            """The request's text parts and attachment, unless data was given explicitly."""
            wrapped = super().wrap_formdata(form, formdata)
            return wrapped if wrapped is None or wrapped is formdata else posted_fields()

        def get_translations(self, form: Any) -> Any:
            """WTForms' own messages in the request's language, read once per process.

            Flask-WTF reads WTForms' catalogue from disk again on every request.
            """
            if not current_app.config.get("WTF_I18N_ENABLED", True):
                return super().get_translations(form)
            return wtforms_catalogue(str(get_locale()))

    # Labels and messages are lazy: translated when shown, in the request's language.
    recipient = SelectField(_l("To"), validate_choice=False, validators=[single_line])
    name = StringField(_l("Your name"), filters=[_one_space], validators=[
        AtMost(NAME_MAX, USE_AT_MOST),
        single_line])
    email = EmailField(_l("Your email address"), filters=[_strip], validators=[
        DataRequired(_l("Enter your email address.")),
        AtMost(EMAIL_MAX, ADDRESS_TOO_LONG_WORDS),
        single_line])
    subject = StringField(_l("Subject"), filters=[_strip], validators=[
        DataRequired(_l("Enter a subject.")),
        AtMost(SUBJECT_MAX, USE_AT_MOST),
        single_line])
    message = TextAreaField(_l("Message"), filters=[_newlines], validators=[
        DataRequired(_l("Enter your message.")),
        AtMost(MESSAGE_MAX, USE_AT_MOST),
        no_control_characters])
    attachment = FileField(_l("Attachment"))
    website = StringField(_l("Leave this field empty"))
    submission_key = HiddenField()
    # The spam defence's fields, judged by contact_site.spam (docs/spam-verdicts.md): when
    # the form was served (signed, issue_form_time) and the proof of work that
    # static/altcha.js fills in.
    form_time = HiddenField()
    altcha = HiddenField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recipients: tuple[Recipient, ...] = current_app.config["CONTACT_RECIPIENTS"]
        self.recipient.choices = [(r.slug, r.name) for r in self.recipients]
        self.checked_upload: CheckedUpload | None = None

    def validate(self, extra_validators: Any = None) -> bool:
        """Validate; every error message as text in the request's language."""
        valid = bool(super().validate(extra_validators))
        for field in self:
            # Text, not LazyString: Jinja takes anything with __html__ for safe markup.
            field.errors = [str(error) for error in field.errors]
        return valid

    def chosen_recipient(self) -> Recipient:
        """The recipient picked (or the only one): never an address from the visitor."""
        slug = self.recipient.data or (self.recipients[0].slug if len(self.recipients) == 1 else "")
        return next(r for r in self.recipients if r.slug == slug)

    def validate_recipient(self, field: Any) -> None:
        """Only the names the site offers; with one recipient it may be omitted."""
        if not field.data and len(self.recipients) == 1:
            return
        if field.data not in {r.slug for r in self.recipients}:
            raise ValidationError(_("Choose who to write to."))

    def validate_email(self, field: Any) -> None:
        """One real-looking address, which the SMTP path can carry; kept in ASCII form."""
        if not field.data.rpartition("@")[0].isascii():
            raise ValidationError(NON_ASCII_LOCAL_PART)
        try:
            # strict: RFC 5321's 64 octets before the @ (254 in all is always checked).
            result = validate_email(
                field.data, check_deliverability=False, allow_smtputf8=False,
                allow_display_name=False, allow_domain_literal=False, strict=True,
            )
        except EmailNotValidError as error:
            raise ValidationError(invalid_address(error)) from None
        address = result.ascii_email or result.normalized
        if len(address) > EMAIL_MAX:  # an IDN domain grows when written in ASCII
            raise ValidationError(str(ADDRESS_TOO_LONG))
        field.data = address

    def validate_submission_key(self, field: Any) -> None:
        """A key issued with the form, or none (then a fresh one is used)."""
        if field.data and not KEY_PATTERN.fullmatch(field.data):
            raise ValidationError(_("This form is out of date: reload the page and send it again."))

    def validate_attachment(self, field: Any) -> None:
        """Size (413), extension, sniffed content and emptiness of the optional file."""
        if field.data and getattr(field.data, "filename", None):
            try:
                self.checked_upload = uploads.check(field.data)
            except uploads.UploadRefused as error:
                raise ValidationError(str(error)) from None

    def honeypot_filled(self) -> bool:
        """The honeypot field is hidden from people; only bots fill it in."""
        return bool(self.website.data)

    def submission_key_or_new(self) -> str:
        """The key issued with the form when it is well-formed, else a fresh one."""
        key = self.submission_key.data
        return key if key and KEY_PATTERN.fullmatch(key) else new_submission_key()

    def submission_fields(self) -> dict[str, Any]:
        """The validated values, named as the Submission's columns."""
        recipient = self.chosen_recipient()
        return {
            "recipient_slug": recipient.slug, "recipient_name": recipient.name,
            "recipient_address": recipient.address, "name": self.name.data or "",
            "email": self.email.data, "subject": self.subject.data, "message": self.message.data,
            "language": i18n.current_language(),
        }

    def spam_fields(self) -> dict[str, Any]:
        """What a bot posted, cut to the columns' sizes, kept for the record only."""
        def cut(value: Any, size: int) -> str:
            # PostgreSQL cannot store NUL in text: keep a visible stand-in.
            return str(value or "")[:size].replace("\x00", "\ufffd")

        recipient = self.recipients[0]
        return {
            "recipient_slug": recipient.slug, "recipient_name": recipient.name,
            "recipient_address": recipient.address, "name": cut(self.name.data, NAME_MAX),
            "email": cut(self.email.data, EMAIL_COLUMN),
            "subject": cut(self.subject.data, SUBJECT_MAX),
            "message": cut(self.message.data, MESSAGE_MAX),
            "language": i18n.current_language(),
        }
