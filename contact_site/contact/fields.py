"""Each declared field as a WTForms field, with its type's rules and its declared limits.

The words (labels, help, messages) are lazy: the classes are built once per form
and each request reads them in its own language.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask_babel import LazyString, ngettext
from flask_babel import gettext as _
from flask_wtf.file import MultipleFileField
from wtforms import BooleanField, EmailField, SelectField, StringField, TextAreaField
from wtforms.fields.core import UnboundField
from wtforms.validators import StopValidation, ValidationError
from wtforms.widgets import FileInput

from .. import i18n
from ..forms import Field, local_text
from ..forms.declaration import LocalTextValue
from . import uploads
from .rules import (
    ADDRESS_TOO_LONG_WORDS,
    USE_AT_MOST,
    AtMost,
    NumberWithin,
    Required,
    email_address,
    newlines,
    no_control_characters,
    one_space,
    real_date,
    required_message,
    single_line,
    strip,
    telephone,
    web_address,
)

Validator = Callable[[Any, Any], None]


def words(text: LocalTextValue) -> LazyString:
    """Declared words, read in the request's language when shown."""
    return LazyString(lambda: local_text(text, i18n.current_language()))


def _required(declared: Field) -> list[Validator]:
    if not declared.required:
        return []
    message = LazyString(lambda: required_message(declared.name, declared.type,
                                                  str(words(declared.label))))
    return [Required(message)]


def _text_rules(declared: Field) -> list[Validator]:
    """Required, then the length bound (which stops the chain), then the type's own rule."""
    limit = declared.max_length or 0
    too_long = ADDRESS_TOO_LONG_WORDS if declared.type == "email" else USE_AT_MOST
    kind_rule: dict[str, list[Validator]] = {
        "textarea": [no_control_characters], "email": [single_line, email_address],
        "tel": [single_line, telephone], "url": [single_line, web_address],
    }
    return [*_required(declared), AtMost(limit, too_long),
            *kind_rule.get(declared.type, [single_line])]


def _text(declared: Field) -> UnboundField[Any]:
    filters = [one_space] if declared.name == "name" else [strip]
    field_class = {"email": EmailField}.get(declared.type, StringField)
    return field_class(words(declared.label), filters=filters, validators=_text_rules(declared))


def _textarea(declared: Field) -> UnboundField[Any]:
    return TextAreaField(words(declared.label), filters=[newlines],
                         validators=_text_rules(declared))


def _number(declared: Field) -> UnboundField[Any]:
    return StringField(words(declared.label), filters=[strip], validators=[
        *_required(declared), AtMost(40, USE_AT_MOST), NumberWithin(declared.min, declared.max)])


def _date(declared: Field) -> UnboundField[Any]:
    return StringField(words(declared.label), filters=[strip],
                       validators=[*_required(declared), real_date])


def one_of_the_options(_form: Any, field: Any) -> None:
    """Only a value the page offered (or nothing, which `required` judges)."""
    if field.data and field.data not in {value for value, _label in field.choices}:
        if field.name == "recipient":
            raise ValidationError(_("Choose who to write to."))
        raise ValidationError(_("Choose one of the options offered."))


def _select(declared: Field) -> UnboundField[Any]:
    # Its choices are given to each bound form (SubmissionForm): WTForms warns of them here.
    # No single_line: only an option's value is taken, and each is the site's own words.
    return SelectField(words(declared.label), validate_choice=False,
                       validators=[*_required(declared), one_of_the_options])


def choices_of(declared: Field) -> list[tuple[str, LazyString]]:
    """A declared select's options as (value, label), the label read in the page's language."""
    return [(option.value, words(option.label)) for option in declared.options]


def _checkbox(declared: Field) -> UnboundField[Any]:
    return BooleanField(words(declared.label), validators=_required(declared))


class FilesWithin:
    """Each file checked on its own by the upload rules, at most `max_files`, and together
    within `max_files` × `max_mb`."""

    def __init__(self, declared: Field) -> None:
        self.declared = declared

    def __call__(self, form: Any, field: Any) -> None:
        sent = [f for f in field.data or [] if getattr(f, "filename", None)]
        if not sent:
            return
        declared = self.declared
        if len(sent) > declared.max_files:
            raise StopValidation(ngettext("Choose at most %(num)s file.",
                                          "Choose at most %(num)s files.", declared.max_files))
        rule = file_rule(declared)
        checked = []
        for file in sent:
            try:
                checked.append(uploads.check(file, rule))
            except uploads.UploadRefused as error:
                raise StopValidation(self.which(file.filename) + str(error)) from None
            except uploads.UploadTooLarge as error:
                raise uploads.UploadTooLarge(str(error.description), field.name) from None
        form.checked_files[field.name] = checked

    def which(self, filename: str | None) -> str:
        """Where several files may be sent, the refused one's name before the reason."""
        if self.declared.max_files == 1:
            return ""
        return f"{uploads.neutral_filename(filename or '')}: "




def file_rule(declared: Field) -> uploads.FileRule:
    """The field's extensions and size per file, the settings' where it declares none."""
    site = uploads.site_rule()
    return uploads.FileRule(declared.extensions or site.extensions,
                            declared.max_mb if declared.max_mb is not None else site.max_mb)


def _file(declared: Field) -> UnboundField[Any]:
    # One file: a plain file input, so the browser's picker takes one.
    return MultipleFileField(words(declared.label), widget=FileInput(declared.max_files > 1),
                             validators=[*_required(declared), FilesWithin(declared)])


BUILDERS: dict[str, Callable[[Field], UnboundField[Any]]] = {
    "text": _text, "email": _text, "tel": _text, "url": _text, "textarea": _textarea,
    "number": _number, "date": _date, "select": _select, "checkbox": _checkbox,
    "consent": _checkbox, "file": _file,
}


def build_field(declared: Field) -> UnboundField[Any]:
    """The WTForms field of one declared field."""
    return BUILDERS[declared.type](declared)
