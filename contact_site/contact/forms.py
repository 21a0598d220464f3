"""The contact form: fields, limits and the rules that make input safe to mail."""

from __future__ import annotations

import re
import secrets
import unicodedata
from typing import Any

from email_validator import EmailNotValidError, validate_email
from flask import current_app, request
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from werkzeug.datastructures import CombinedMultiDict, MultiDict
from wtforms import EmailField, HiddenField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, ValidationError

from ..config import Recipient
from ..submissions.files import CheckedUpload
from ..submissions.models import EMAIL_COLUMN, EMAIL_MAX, MESSAGE_MAX, NAME_MAX, SUBJECT_MAX
from . import uploads

# U+0085, U+2028 and U+2029 end a line for some mail software though they are not Cc.
LINE_SEPARATORS = {"\u0085", "\u2028", "\u2029"}
KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
# Such addresses need SMTPUTF8, which our outgoing path does not offer.
NON_ASCII_LOCAL_PART = ("Enter an address whose part before the @ uses only the letters a-z, "
                        "digits and . _ + - : we cannot send mail to other characters there.")


def _strip(value: Any) -> Any:
    # Spaces only: a line break at either end is refused below, not quietly removed.
    return value.strip(" ") if isinstance(value, str) else value


def _newlines(value: Any) -> Any:
    # Browsers send CRLF yet count it as one character against maxlength; so do we.
    return value.replace("\r\n", "\n") if isinstance(value, str) else value


def single_line(_form: Any, field: Any) -> None:
    """Refuse line breaks and control characters: they could forge mail headers."""
    value = field.data or ""
    if any(unicodedata.category(c) in {"Cc", "Zl", "Zp"} or c in LINE_SEPARATORS for c in value):
        raise ValidationError("Use a single line without line breaks or control characters.")


def no_control_characters(_form: Any, field: Any) -> None:
    """Multi-line text may hold tabs and line breaks, but no other control characters."""
    if any(unicodedata.category(c) == "Cc" and c not in "\t\r\n" for c in field.data or ""):
        raise ValidationError("Remove the control characters from your message.")


def new_submission_key() -> str:
    """A fresh key for one rendering of the form."""
    return secrets.token_urlsafe(24)


def posted_fields() -> CombinedMultiDict:
    """The text parts of the posted form, and files from the `attachment` part only."""
    files = MultiDict([("attachment", file) for file in request.files.getlist("attachment")])
    return CombinedMultiDict([files, request.form])


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

    recipient = SelectField("To", validate_choice=False)
    name = StringField("Your name", filters=[_strip], validators=[
        Length(max=NAME_MAX, message=f"Use at most {NAME_MAX} characters."), single_line])
    email = EmailField("Your email address", filters=[_strip], validators=[
        DataRequired("Enter your email address."),
        Length(max=EMAIL_MAX, message=f"An email address has at most {EMAIL_MAX} characters."),
        single_line])
    subject = StringField("Subject", filters=[_strip], validators=[
        DataRequired("Enter a subject."),
        Length(max=SUBJECT_MAX, message=f"Use at most {SUBJECT_MAX} characters."), single_line])
    message = TextAreaField("Message", filters=[_newlines], validators=[
        DataRequired("Enter your message."),
        Length(max=MESSAGE_MAX, message=f"Use at most {MESSAGE_MAX:,} characters."),
        no_control_characters])
    attachment = FileField("Attachment")
    website = StringField("Leave this field empty")
    submission_key = HiddenField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recipients: tuple[Recipient, ...] = current_app.config["CONTACT_RECIPIENTS"]
        self.recipient.choices = [(r.slug, r.name) for r in self.recipients]
        self.checked_upload: CheckedUpload | None = None

    def chosen_recipient(self) -> Recipient:
        """The recipient picked (or the only one): never an address from the visitor."""
        slug = self.recipient.data or (self.recipients[0].slug if len(self.recipients) == 1 else "")
        return next(r for r in self.recipients if r.slug == slug)

    def validate_recipient(self, field: Any) -> None:
        """Only the names the site offers; with one recipient it may be omitted."""
        if not field.data and len(self.recipients) == 1:
            return
        if field.data not in {r.slug for r in self.recipients}:
            raise ValidationError("Choose who to write to.")

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
            raise ValidationError(f"Enter a valid email address. {error}") from None
        address = result.ascii_email or result.normalized
        if len(address) > EMAIL_MAX:  # an IDN domain grows when written in ASCII
            raise ValidationError("An email address has at most 254 characters.")
        field.data = address

    def validate_submission_key(self, field: Any) -> None:
        """A key issued with the form, or none (then a fresh one is used)."""
        if field.data and not KEY_PATTERN.fullmatch(field.data):
            raise ValidationError("This form is out of date: reload the page and send it again.")

    def validate_attachment(self, field: Any) -> None:
        """Size (413), extension, sniffed content and emptiness of the optional file."""
        if field.data and getattr(field.data, "filename", None):
            try:
                self.checked_upload = uploads.check(field.data)
            except uploads.UploadRefused as error:
                raise ValidationError(str(error)) from None

    def is_spam(self) -> bool:
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
        }
