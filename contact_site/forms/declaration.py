"""The forms file (CONTACT_FORMS_FILE): read, validated and turned into typed objects."""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import filetype
import pydantic
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    ValidationInfo,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from ..config import ConfigError, Recipient, parse_recipients
from ..submissions.models import EMAIL_MAX, MESSAGE_MAX, NAME_MAX, SUBJECT_MAX

FIELD_TYPES = ("text", "textarea", "email", "tel", "url", "number", "date", "select",
               "checkbox", "consent", "file")
TEXT_TYPES = {"text", "textarea", "email", "tel", "url"}
DEFAULT_MAX_LENGTH = 200
TEXTAREA_MAX_LENGTH = 10_000
# No field may take more: every request's text is bounded by the largest form's sum.
MAX_LENGTH_CAP = 100_000
# WCAG 2's minimum contrast for normal text (success criterion 1.4.3).
MIN_CONTRAST = 4.5
# The keys each type takes beyond name, type, label, required and help.
TYPE_KEYS = {"max_length": TEXT_TYPES, "min": {"number"}, "max": {"number"},
             "options": {"select"}, "text": {"consent"},
             "max_files": {"file"}, "max_mb": {"file"}, "extensions": {"file"}}
# The page's own fields (token, honeypot, key, spam defence): no declared field takes them.
RESERVED_NAMES = ("csrf_token", "website", "submission_key", "form_time", "altcha")
# Besides what filetype recognises by content, the documents and text the upload checks know.
CHECKED_EXTENSIONS = {"txt", "docx", "odt", "jpeg"}
# Names with a fixed meaning, and the type each must have.
FIXED_TYPES = {"email": "email", "recipient": "select", "attachment": "file", "name": "text",
               "subject": "text", "message": "textarea"}
# The fixed names stored in a column of their own take at most what the column holds.
COLUMN_LIMITS = {"name": NAME_MAX, "email": EMAIL_MAX, "subject": SUBJECT_MAX}
HOST = r"(\*\.)?([a-z0-9]([a-z0-9-]*[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]*[a-z0-9])?"
ORIGIN = re.compile(rf"https?://{HOST}(:[0-9]{{1,5}})?")
HTTP_URL = re.compile(rf"https?://{HOST}(:[0-9]{{1,5}})?(/[^\s]*)?")
COLOR = re.compile(r"#([0-9a-fA-F]{3}|[0-9a-fA-F]{6})")
ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]*")
MIB = 1024 * 1024
# The built-in form's slug, and the form of every submission stored before forms were declared.
DEFAULT_SLUG = "contact"


class FormsFileError(SystemExit):
    """The forms file is missing, malformed or inconsistent; the message is one line."""

    def __init__(self, path: str | Path, where: Sequence[str], problem: str) -> None:
        super().__init__(": ".join([str(path), *where, problem]))


def problem(text: str) -> PydanticCustomError:
    """A validation error whose message is `text`, word for word."""
    return PydanticCustomError("forms_file", "{problem}", {"problem": text})


def _local_text(value: Any) -> Any:
    """A string, or a table of one non-empty string per language."""
    if isinstance(value, str) and value.strip():
        return value
    if (isinstance(value, dict) and value
            and all(isinstance(v, str) and v.strip() for v in value.values())):
        return value
    raise problem("must be a non-empty string or a table of one string per language")


def _every_language(value: str | dict[str, str], info: ValidationInfo) -> str | dict[str, str]:
    """A per-language table names every offered language."""
    languages = (info.context or {}).get("languages", ())
    missing = [lang for lang in languages if isinstance(value, dict) and lang not in value]
    if missing:
        raise problem(f"missing for language {', '.join(missing)}")
    return value


# Words in every language: one string for all, or a table of one string per language.
LocalTextValue = str | dict[str, str]
LocalText = Annotated[LocalTextValue, BeforeValidator(_local_text),
                      AfterValidator(_every_language)]


def _matching(pattern: re.Pattern[str], what: str) -> AfterValidator:
    def check(value: str) -> str:
        if not pattern.fullmatch(value):
            raise problem(f"{value!r} is not {what}")
        return value

    return AfterValidator(check)


Origin = Annotated[str, _matching(ORIGIN, "an origin like https://www.example.com "
                                          "(no path; only a leading '*.' wildcard)")]
HttpUrl = Annotated[str, _matching(HTTP_URL, "an http(s) URL")]


def contrast_on_white(color: str) -> float:
    """WCAG 2's contrast ratio of `#rgb`/`#rrggbb` on white."""
    digits = color.lstrip("#")
    if len(digits) == 3:
        digits = "".join(d * 2 for d in digits)
    channels = [int(digits[i:i + 2], 16) / 255 for i in (0, 2, 4)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 1.05 / (luminance + 0.05)


def _readable_color(value: str) -> str:
    if not COLOR.fullmatch(value):
        raise problem(f"{value!r} is not a colour like #0b5fff")
    ratio = contrast_on_white(value)
    if ratio < MIN_CONTRAST:
        raise problem(f"{value} has a contrast of {ratio:.2f}:1 on white, "
                      f"under {MIN_CONTRAST}:1")
    return value


def _beside_the_file(value: str, info: ValidationInfo) -> str:
    """A plain file name, present beside the forms file when the loader says where that is."""
    if not value or Path(value).name != value:
        raise problem(f"{value!r} must be a file name beside the forms file, without folders")
    folder = (info.context or {}).get("folder")
    if folder is not None and not (Path(folder) / value).is_file():
        raise problem(f"{value!r} is not a file beside the forms file")
    return value


FileBeside = Annotated[str, AfterValidator(_beside_the_file)]


class Declared(BaseModel):
    """A part of the forms file: unknown keys are refused, nothing changes once read."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Site(Declared):
    """`[site]`: what the pages and mails say about the site; each part optional."""

    name: str | None = None
    home_url: HttpUrl | None = None
    accent_color: Annotated[str, AfterValidator(_readable_color)] | None = None
    logo: FileBeside | None = None


class Option(Declared):
    """One choice of a `select`: the value posted and the label shown."""

    value: Annotated[str, pydantic.Field(min_length=1, max_length=200)]
    label: LocalText


def _known_type(value: Any) -> Any:
    if value not in FIELD_TYPES:
        raise problem(f"unknown type {value!r} (one of: {', '.join(FIELD_TYPES)})")
    return value


def _default_max_length(data: Any) -> Any:
    if isinstance(data, dict) and data.get("type") in TEXT_TYPES and "max_length" not in data:
        limit = {"textarea": TEXTAREA_MAX_LENGTH, "email": EMAIL_MAX}.get(data["type"],
                                                                       DEFAULT_MAX_LENGTH)
        return {**data, "max_length": min(limit, COLUMN_LIMITS.get(str(data.get("name")), limit))}
    return data


def _type_keys(data: Any) -> Any:
    """Refuse a key the field's type does not take (options on a text field, ...)."""
    if not isinstance(data, dict) or data.get("type") not in FIELD_TYPES:
        return data
    for key, types in TYPE_KEYS.items():
        if key in data and data["type"] not in types:
            raise problem(f"{key} is not taken by type {data['type']} "
                          f"(only by {', '.join(sorted(types))})")
    return data


class Field(Declared):
    """One `[[forms.fields]]`: its name, type, words and the limits its type takes."""

    name: Annotated[str, pydantic.Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")]
    type: Annotated[Literal["text", "textarea", "email", "tel", "url", "number", "date",
                            "select", "checkbox", "consent", "file"],
                    BeforeValidator(_known_type)]
    label: LocalText
    required: bool = False
    help: LocalText | None = None
    max_length: Annotated[int, pydantic.Field(gt=0, le=MAX_LENGTH_CAP)] | None = None
    min: float | None = None
    max: float | None = None
    options: tuple[Option, ...] = ()
    text: LocalText | None = None
    max_files: Annotated[int, pydantic.Field(gt=0)] = 1
    max_mb: Annotated[float, pydantic.Field(gt=0)] | None = None
    extensions: tuple[Annotated[str, pydantic.Field(pattern=r"^[a-z0-9]{1,10}$")], ...] = ()

    @model_validator(mode="before")
    @classmethod
    def _before(cls, data: Any) -> Any:
        return _default_max_length(_type_keys(data))

    def file_mb(self, default_mb: int) -> float:
        """A file field's limit per file: its own `max_mb`, else CONTACT_MAX_UPLOAD_MB."""
        return self.max_mb if self.max_mb is not None else default_mb

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.name in RESERVED_NAMES:
            raise problem(f"the name {self.name!r} is taken by the page itself; choose another")
        unknown = [e for e in self.extensions
                   if e not in CHECKED_EXTENSIONS and filetype.get_type(ext=e) is None]
        if unknown:
            raise problem(f"extension {unknown[0]!r} cannot be checked by its content "
                          "(use types such as pdf, png, jpg, txt, docx, odt)")
        column = COLUMN_LIMITS.get(self.name)
        if column is not None and (self.max_length or 0) > column:
            raise problem(f"a field named {self.name} takes at most {column} characters")
        fixed = FIXED_TYPES.get(self.name)
        if fixed is not None and self.type != fixed:
            raise problem(f"a field named {self.name} must have type {fixed}")
        if self.type == "select" and self.name != "recipient" and not self.options:
            raise problem("a select field needs options")
        if self.name == "recipient" and self.options:
            raise problem("the recipient's options are the form's recipients; remove options")
        if len({o.value for o in self.options}) != len(self.options):
            raise problem("two options have the same value")
        if self.type == "consent" and self.text is None:
            raise problem("a consent field needs the text the visitor agrees to")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise problem(f"min {self.min:g} is above max {self.max:g}")
        return self


# The choice added to a form with several recipients that does not declare one.
RECIPIENT_FIELD = Field(name="recipient", type="select", label="Who to write to", required=True)


class Webhook(Declared):
    """One `[[forms.webhooks]]`, parsed now for the webhooks to come."""

    url: HttpUrl
    format: Literal["standard", "slack", "ntfy"] = "standard"
    secret_env: Annotated[str, _matching(ENV_NAME, "an environment variable's name")] | None = None
    events: tuple[Literal["submission.created", "delivery.failed"], ...] = ("submission.created",)
    include_suspect: bool = False


def _recipients(value: Any) -> Any:
    """`["Name <address>", ...]` into recipients, by the rules of CONTACT_RECIPIENTS."""
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return value
    try:
        return parse_recipients("recipients", ", ".join(value)) if value else ()
    except ConfigError as error:
        raise problem(str(error.code).partition(" recipients ")[2]) from None


def _thank_you_pdf(value: Any, info: ValidationInfo) -> Any:
    if value is False:
        return value
    if isinstance(value, str):
        return _beside_the_file(value, info)
    raise problem("must be a file name, or false for a thank-you mail without a PDF")


def _fields_of_a_form(fields: tuple[Field, ...]) -> tuple[Field, ...]:
    """Each name once, and an `email` field in every form."""
    names = [f.name for f in fields]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise problem(f"field {twice[0]!r} is declared twice")
    if "email" not in names:
        raise problem("no field named 'email' (every form needs the visitor's address)")
    return fields


class Form(Declared):
    """One `[[forms]]`: served at /f/<slug>, the first also at /."""

    slug: Annotated[str, pydantic.Field(pattern=r"^[a-z0-9-]{1,40}$")]
    title: LocalText
    recipients: Annotated[tuple[Recipient, ...], BeforeValidator(_recipients)] = ()
    thank_you: bool = True
    thank_you_pdf: Annotated[str | Literal[False] | None,
                             BeforeValidator(_thank_you_pdf)] = None
    allowed_origins: tuple[Origin, ...] = ()
    webhooks: tuple[Webhook, ...] = ()
    fields: Annotated[tuple[Field, ...], pydantic.Field(min_length=1),
                      AfterValidator(_fields_of_a_form)]

    @cached_property
    def version(self) -> str:
        """SHA-256 of this form's declaration, in canonical JSON: it changes with the form."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True,
                               ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def field(self, name: str) -> Field | None:
        """The field called `name`, or None."""
        return next((f for f in self.fields if f.name == name), None)

    def file_bytes(self, default_mb: int) -> int:
        """The most all of this form's files may weigh together, in bytes."""
        return sum(int(f.file_mb(default_mb) * MIB) * f.max_files
                   for f in self.fields if f.type == "file")

    def completed(self, recipients: Sequence[Recipient]) -> Form:
        """With CONTACT_RECIPIENTS when it names none, and the recipient's choice where
        there is a choice: added first when not declared, dropped with one recipient."""
        own = self.recipients or tuple(recipients)
        fields = self.fields
        if len(own) > 1 and self.field("recipient") is None:
            fields = (RECIPIENT_FIELD, *fields)
        if len(own) == 1:
            fields = tuple(f for f in fields if f.name != "recipient")
        version = self.version  # of the form as declared: settings do not change it
        done = self.model_copy(update={"recipients": own, "fields": fields})
        done.__dict__["version"] = version
        return done


def _slugs_once(forms: tuple[Form, ...]) -> tuple[Form, ...]:
    slugs = [f.slug for f in forms]
    for index, slug in enumerate(slugs):
        if slug in slugs[:index]:
            raise problem(f"form #{index + 1} uses slug {slug!r}, "
                          f"already the slug of form #{slugs.index(slug) + 1}")
    return forms


class Declaration(Declared):
    """The whole file: the site, and its forms in order (the first is also served at /)."""

    site: Site = Site()
    forms: Annotated[tuple[Form, ...], pydantic.Field(min_length=1), AfterValidator(_slugs_once)]

    def form(self, slug: str) -> Form | None:
        """The form served at /f/<slug>, or None."""
        return next((f for f in self.forms if f.slug == slug), None)

    def recipients(self) -> list[Recipient]:
        """Every recipient the forms send to, once each (by slug), in the file's order."""
        found: dict[str, Recipient] = {}
        for form in self.forms:
            for recipient in form.recipients:
                found.setdefault(recipient.slug, recipient)
        return list(found.values())

    def completed(self, recipients: Sequence[Recipient]) -> Declaration:
        """Every form completed from CONTACT_RECIPIENTS (Form.completed)."""
        return self.model_copy(update={"forms": tuple(f.completed(recipients)
                                                      for f in self.forms)})


def load_forms(path: str | Path, languages: Sequence[str]) -> Declaration:
    """Read and validate the forms file; any problem raises one FormsFileError."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as error:
        raise FormsFileError(path, [], f"cannot be read: {error.strerror}") from None
    except tomllib.TOMLDecodeError as error:
        raise FormsFileError(path, [], f"is not valid TOML: {error}") from None
    context = {"languages": tuple(languages), "folder": Path(path).parent}
    try:
        return Declaration.model_validate(data, context=context)
    except ValidationError as error:
        first = error.errors()[0]
        raise FormsFileError(path, where(first["loc"], data), message(first)) from None


def where(loc: tuple[int | str, ...], data: Mapping[str, Any]) -> list[str]:
    """Pydantic's location in words: the form (slug or #n), the field (name or #n), the key."""
    words: list[str] = []
    rest = list(loc)
    if rest[:1] == ["forms"] and len(rest) > 1 and isinstance(rest[1], int):
        form = _item(data.get("forms"), rest[1])
        words.append(_named("form", form.get("slug"), rest[1]))
        rest = rest[2:]
        if rest[:1] == ["fields"] and len(rest) > 1 and isinstance(rest[1], int):
            field = _item(form.get("fields"), rest[1])
            words.append(_named("field", field.get("name"), rest[1]))
            rest = rest[2:]
    if rest:
        words.append(_key_path(rest))
    return words


def message(error: ErrorDetails) -> str:
    """Pydantic's message, in the file's words."""
    if error["type"] == "extra_forbidden":
        return "unknown key"
    if error["type"] == "missing":
        return "missing"
    if error["type"] == "string_pattern_mismatch":
        pattern = (error.get("ctx") or {}).get("pattern", "")
        return f"{error['input']!r} does not match {pattern.strip('^$')}"
    return str(error["msg"])


def _item(items: Any, index: int) -> dict[str, Any]:
    item = items[index] if isinstance(items, list) and index < len(items) else None
    return dict(item) if isinstance(item, dict) else {}


def _named(kind: str, name: Any, index: int) -> str:
    return f"{kind} {name!r}" if isinstance(name, str) else f"{kind} #{index + 1}"


def _key_path(parts: Sequence[int | str]) -> str:
    """('options', 0, 'value') → options[1].value (the 1 counts from one, as people do)."""
    text = ""
    for part in parts:
        text += f"[{part + 1}]" if isinstance(part, int) else f".{part}"
    return text.lstrip(".")


def default_declaration(recipients: Sequence[Recipient]) -> Declaration:
    """Today's single form, when no forms file is given.

    Its words are the catalogue's msgids (contact_site.forms.local_text translates
    them); a site's own file gives its words per language instead.
    """
    fields: list[dict[str, Any]] = [
        {"name": "name", "type": "text", "label": "Your name", "max_length": NAME_MAX},
        {"name": "email", "type": "email", "label": "Your email address", "required": True,
         "max_length": EMAIL_MAX},
        {"name": "subject", "type": "text", "label": "Subject", "required": True,
         "max_length": SUBJECT_MAX},
        {"name": "message", "type": "textarea", "label": "Message", "required": True,
         "max_length": MESSAGE_MAX},
        {"name": "attachment", "type": "file", "label": "Attachment"},
    ]
    form = {"slug": DEFAULT_SLUG, "title": "Contact", "fields": fields}
    return Declaration.model_validate({"forms": [form]}).completed(recipients)
