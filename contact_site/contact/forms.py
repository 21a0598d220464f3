"""The form a visitor fills in: built from its declaration, with the spam defence's fields.

`form_class(declared)` makes (once per form) a FlaskForm whose fields are the
declared ones in order (contact/fields.py) and whose hidden fields are the site's
own: the honeypot, the submission key, the form's time and the proof of work.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
from typing import Any, ClassVar, cast

from babel import support
from flask import current_app, request
from flask_babel import get_locale
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.datastructures import CombinedMultiDict, MultiDict
from wtforms import HiddenField, StringField
from wtforms.i18n import messages_path
from wtforms.validators import ValidationError

from .. import i18n
from ..app_state import state_of
from ..config import Recipient
from ..forms import Form, local_text
from ..submissions.answers import stored_entry
from ..submissions.content import new_submission_key
from ..submissions.files import CheckedUpload
from ..submissions.models import EMAIL_COLUMN, MESSAGE_MAX, NAME_MAX, SUBJECT_MAX
from .fields import build_field, choices_of

KEY_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")


@functools.lru_cache(maxsize=8)
def wtforms_catalogue(locale: str) -> support.NullTranslations:
    """WTForms' built-in messages in this locale (its own catalogue)."""
    return support.Translations.load(messages_path(), [locale], domain="wtforms")


def posted_fields(file_fields: tuple[str, ...]) -> CombinedMultiDict[str, Any]:
    """The text parts of the posted form, and files from the form's file fields only."""
    files = MultiDict([(name, file) for name in file_fields
                       for file in request.files.getlist(name)])
    return CombinedMultiDict([files, request.form])


class SubmissionForm(FlaskForm):
    """What a visitor may send through one declared form; subclassed per form by form_class."""

    declared: ClassVar[Form]

    class Meta(FlaskForm.Meta):
        """Fields read from form-encoded bodies only.

        Flask-WTF would also read a JSON body, and a file part posted under any
        field's name: numbers, objects and files where text belongs crash validators.
        """

        def wrap_formdata(self, form: Any, formdata: Any) -> Any:
            """The request's text parts and the form's files, unless data was given explicitly."""
            wrapped = super().wrap_formdata(form, formdata)
            if wrapped is None or wrapped is formdata:
                return wrapped
            return posted_fields(tuple(f.name for f in form.declared.fields if f.type == "file"))

        def get_translations(self, form: Any) -> Any:
            """WTForms' own messages in the request's language, read once per process.

            Flask-WTF reads WTForms' catalogue from disk again on every request.
            """
            if not current_app.config.get("WTF_I18N_ENABLED", True):
                return super().get_translations(form)
            return wtforms_catalogue(str(get_locale()))

    website = StringField(_l("Leave this field empty"))
    submission_key = HiddenField()
    # The spam defence's fields, judged by contact_site.spam (docs/spam-verdicts.md): when
    # the form was served (signed, issue_form_time) and the proof of work that
    # static/altcha.js fills in.
    form_time = HiddenField()
    altcha = HiddenField()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.recipients: tuple[Recipient, ...] = self.declared.recipients
        for declared in self.declared.fields:
            if declared.type == "select":
                self[declared.name].choices = choices_of(declared)
        if "recipient" in self:
            self["recipient"].choices = [(r.slug, r.name) for r in self.recipients]
        self.checked_files: dict[str, list[CheckedUpload]] = {}

    def declared_fields(self) -> list[Any]:
        """The bound fields of the declaration, in its order."""
        return [self[f.name] for f in self.declared.fields]

    def validate(self, extra_validators: Any = None) -> bool:
        """Validate; every error message as text in the request's language."""
        valid = bool(super().validate(extra_validators))
        for field in self:
            # Text, not LazyString: Jinja takes anything with __html__ for safe markup.
            field.errors = [str(error) for error in field.errors]
        return valid

    def chosen_recipient(self) -> Recipient:
        """The recipient picked (or the only one): never an address from the visitor."""
        slug = self.data.get("recipient") or (
            self.recipients[0].slug if len(self.recipients) == 1 else "")
        return next(r for r in self.recipients if r.slug == slug)

    def validate_submission_key(self, field: Any) -> None:
        """A key issued with the form, or none (then a fresh one is used)."""
        if field.data and not KEY_PATTERN.fullmatch(field.data):
            raise ValidationError(_("This form is out of date: reload the page and send it again."))

    def honeypot_filled(self) -> bool:
        """The honeypot field is hidden from people; only bots fill it in."""
        return bool(self.website.data)

    def submission_key_or_new(self) -> str:
        """The key issued with the form when it is well-formed, else a fresh one."""
        key = self.submission_key.data
        return key if key and KEY_PATTERN.fullmatch(key) else new_submission_key()

    def posted_values(self) -> dict[str, str]:
        """What the spam rules read: the posted text, with the form's time as this form holds
        it (from a token, for a form on another site)."""
        values = dict(request.form.items())
        values["form_time"] = self.form_time.data or ""
        return values

    def uploads(self) -> list[tuple[str, CheckedUpload]]:
        """Every checked file with its field's name, in the form's order."""
        return [(f.name, upload) for f in self.declared.fields
                for upload in self.checked_files.get(f.name, [])]

    def submission_fields(self) -> dict[str, Any]:
        """The validated values, named as the Submission's columns."""
        recipient = self.chosen_recipient()
        data = self.data
        return {
            "recipient_slug": recipient.slug, "recipient_name": recipient.name,
            "recipient_address": recipient.address, "name": data.get("name") or "",
            "email": data["email"], "subject": data.get("subject") or "",
            "message": data.get("message") or "", "language": i18n.current_language(),
            "form_slug": self.declared.slug, "form_version": self.declared.version,
            "answers": self.answers(),
        }

    def answers(self) -> list[dict[str, Any]]:
        """Every declared field's entry: its label as shown now and its value."""
        language = i18n.current_language()
        entries = []
        for declared in self.declared.fields:
            value = self[declared.name].data
            details: dict[str, Any] = {}
            if declared.type == "file":
                value = [upload.filename for upload in self.checked_files.get(declared.name, [])]
            elif declared.type == "select" and declared.name != "recipient":
                option = next((o for o in declared.options if o.value == value), None)
                value = value or None
                if option is not None:
                    details["option_label"] = option.label
            elif declared.type == "consent" and declared.text is not None:
                shown = local_text(declared.text, language)
                details = {"text": shown, "language": language,
                           "sha256": hashlib.sha256(shown.encode()).hexdigest()}
            entries.append(stored_entry(declared.name, declared.type, declared.label,
                                        value, **details))
        return entries

    def spam_fields(self) -> dict[str, Any]:
        """What a bot posted, cut to the columns' sizes, kept for the record only."""
        def cut(name: str, size: int) -> str:
            # PostgreSQL cannot store NUL in text: keep a visible stand-in.
            return str(request.form.get(name) or "")[:size].replace("\x00", "\ufffd")

        recipient = self.recipients[0]
        return {
            "recipient_slug": recipient.slug, "recipient_name": recipient.name,
            "recipient_address": recipient.address, "name": cut("name", NAME_MAX),
            "email": cut("email", EMAIL_COLUMN), "subject": cut("subject", SUBJECT_MAX),
            "message": cut("message", MESSAGE_MAX), "language": i18n.current_language(),
            "form_slug": self.declared.slug, "form_version": self.declared.version,
        }


_classes_lock = threading.Lock()


class FormClasses:
    """The form classes made in this app, by slug and version."""

    def __init__(self) -> None:
        self.made: dict[tuple[str, str], type[SubmissionForm]] = {}


def form_class(declared: Form) -> type[SubmissionForm]:
    """The FlaskForm of a declared form: its fields in order, then the site's hidden ones."""
    made = state_of(current_app, FormClasses).made
    key = (declared.slug, declared.version)
    with _classes_lock:
        found = made.get(key)
        if found is None:
            attributes: dict[str, Any] = {f.name: build_field(f) for f in declared.fields}
            attributes["declared"] = declared
            found = cast(type[SubmissionForm],
                         type(f"Form_{declared.slug}", (SubmissionForm,), attributes))
            made[key] = found
    return found
