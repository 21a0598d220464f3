"""Operator commands: `flask --app contact_site forms check|show`.

A bad CONTACT_FORMS_FILE stops the app from loading, and with it every command,
`forms check` included: it prints the file's one-line problem and exits with status 1,
as start-up does. To check a new file before it goes live, keep the setting as it is
(or unset) and name the file: `forms check --file new-forms.toml`.
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from ..escaping import ESCAPED_CATEGORIES, echo_escaped
from ..i18n import in_language
from . import declaration_of, local_text
from .declaration import TEXT_TYPES, Field, Form, FormsFileError, LocalTextValue, load_forms
from .secrets import check_secrets
from .site import check_site

forms_cli = AppGroup("forms", help="Check the forms file; show the forms the site serves.")


@forms_cli.command("check")
@click.option("--file", "path", type=click.Path(dir_okay=False),
              help="Check this file instead of CONTACT_FORMS_FILE.")
def check_command(path: str | None) -> None:
    """Read the forms file as start-up does: 'ok', or its one-line problem and status 1."""
    path = path or current_app.config.get("CONTACT_FORMS_FILE")
    if not path:
        raise click.UsageError("CONTACT_FORMS_FILE is not set (the site serves its built-in "
                               "form): name a file with --file")
    try:
        declaration = load_forms(path, current_app.config["CONTACT_LANGUAGES"])
        check_site(path, declaration.site)
        secrets = check_secrets(declaration, os.environ)  # as start-up checks them
        if secrets:
            raise FormsFileError(path, [], secrets[0])
    except FormsFileError as error:
        echo_escaped(str(error.code), err=True)
        raise click.exceptions.Exit(1) from None
    count = len(declaration.forms)
    slugs = ", ".join(form.slug for form in declaration.forms)
    echo_escaped(f"{path}: ok, {count} form{'s' if count > 1 else ''} ({slugs})")


@forms_cli.command("show")
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def show_command(as_json: bool) -> None:
    """The forms as the site serves them, completed from the settings."""
    described = describe(current_app._get_current_object())  # type: ignore[attr-defined]
    if as_json:
        click.echo(terminal_safe_json(described))
        return
    for line in text_lines(described):
        echo_escaped(line)


def describe(app: Flask) -> dict[str, Any]:
    """The app's site and forms as plain data: what `show` prints, as text or JSON."""
    declaration = declaration_of(app)
    return {"site": declaration.site.model_dump(mode="json"),
            "forms": [describe_form(form, index, app.config)
                      for index, form in enumerate(declaration.forms)]}


def describe_form(form: Form, index: int, config: Mapping[str, Any]) -> dict[str, Any]:
    """One form: where it is served, its words, where its messages go, its fields."""
    languages = config["CONTACT_LANGUAGES"]
    return {
        "slug": form.slug,
        "paths": (["/"] if index == 0 else []) + [f"/f/{form.slug}"],
        "version": form.version,
        "title": per_language(form.title, languages),
        "recipients": [{"slug": r.slug, "name": r.name, "address": r.address}
                       for r in form.recipients],
        "thank_you": form.thank_you,
        "thank_you_pdf": thank_you_pdf(form, config),
        "allowed_origins": list(form.allowed_origins),
        # The secret's value is the environment's business: only its variable is named.
        "webhooks": [hook.model_dump(mode="json") for hook in form.webhooks],
        "fields": [describe_field(field, form, config) for field in form.fields],
    }


def describe_field(field: Field, form: Form, config: Mapping[str, Any]) -> dict[str, Any]:
    """One field: its name, type, words, and the limits and choices its type takes."""
    languages = config["CONTACT_LANGUAGES"]
    described: dict[str, Any] = {
        "name": field.name, "type": field.type, "required": field.required,
        "label": per_language(field.label, languages),
        "help": per_language(field.help, languages),
        **limits(field, config),
    }
    if field.type == "select":
        described["options"] = options(field, form, languages)
    if field.type == "consent":
        described["text"] = per_language(field.text, languages)
    return described


def limits(field: Field, config: Mapping[str, Any]) -> dict[str, Any]:
    """The limits of the field's type, the settings' defaults filled in."""
    if field.type in TEXT_TYPES:
        return {"max_length": field.max_length}
    if field.type == "number":
        return {"min": field.min, "max": field.max}
    if field.type == "file":
        return {"max_files": field.max_files,
                "max_mb": field.file_mb(config["CONTACT_MAX_UPLOAD_MB"]),
                "extensions": list(field.extensions or config["CONTACT_ALLOWED_EXTENSIONS"])}
    return {}


def options(field: Field, form: Form, languages: Sequence[str]) -> list[dict[str, Any]]:
    """A select's choices; the recipient's are the form's recipients."""
    if field.name == "recipient":
        return [{"value": r.slug, "label": {lang: r.name for lang in languages}}
                for r in form.recipients]
    return [{"value": option.value, "label": per_language(option.label, languages)}
            for option in field.options]


def per_language(text: LocalTextValue | None, languages: Sequence[str]) -> dict[str, str] | None:
    """Declared words in each offered language, as the pages show them."""
    if text is None:
        return None
    words: dict[str, str] = {}
    for language in languages:
        with in_language(language):
            words[language] = local_text(text, language)
    return words


def thank_you_pdf(form: Form, config: Mapping[str, Any]) -> str | None:
    """The PDF the thank-you mail carries: the form's own, else CONTACT_THANK_YOU_PDF."""
    if not form.thank_you or form.thank_you_pdf is False:
        return None
    if form.thank_you_pdf is None:
        return config["CONTACT_THANK_YOU_PDF"] or None
    return str(Path(config["CONTACT_FORMS_FILE"]).parent / form.thank_you_pdf)


def text_lines(described: Mapping[str, Any]) -> Iterator[str]:
    """`show`'s text: the site, then each form and its fields."""
    site = described["site"]
    declared = [f"{key} {value}" for key, value in site.items() if value]
    yield "site: " + (", ".join(declared) or "nothing declared")
    for form in described["forms"]:
        yield from form_lines(form)


def form_lines(form: Mapping[str, Any]) -> Iterator[str]:
    """One form in text, a line per part."""
    yield ""
    yield f"form {form['slug']}: {' and '.join(form['paths'])} (version {form['version'][:12]})"
    yield f"  title: {in_words(form['title'])}"
    yield "  recipients: " + "; ".join(f"{r['slug']} = {r['name']} <{r['address']}>"
                                        for r in form["recipients"])
    pdf = f"with {form['thank_you_pdf']}" if form["thank_you_pdf"] else "without a PDF"
    yield f"  thank-you mail: {pdf}" if form["thank_you"] else "  thank-you mail: none"
    yield f"  allowed origins: {', '.join(form['allowed_origins']) or 'none'}"
    for hook in form["webhooks"]:
        secret = f"secret from ${hook['secret_env']}" if hook["secret_env"] else "unsigned"
        suspect = "suspect included" if hook["include_suspect"] else "suspect left out"
        yield (f"  webhook: {hook['url']} ({hook['format']}; {', '.join(hook['events'])}; "
               f"{suspect}; {secret})")
    if not form["webhooks"]:
        yield "  webhooks: none"
    yield "  fields:"
    for field in form["fields"]:
        yield from field_lines(field)


def field_lines(field: Mapping[str, Any]) -> Iterator[str]:
    """One field in text: a line with its type and limits, then its words."""
    shown = ("name", "type", "required", "label", "help", "options", "text")
    limits = [f"{key} {value_text(value)}" for key, value in field.items()
              if key not in shown and value is not None]
    required = "required" if field["required"] else "optional"
    yield f"    {field['name']}: {', '.join([field['type'], required, *limits])}"
    yield f"      label: {in_words(field['label'])}"
    for key in ("help", "text"):
        if field.get(key):
            yield f"      {key}: {in_words(field[key])}"
    for option in field.get("options", ()):
        yield f"      option {option['value']}: {in_words(option['label'])}"


def value_text(value: Any) -> str:
    """A limit in text: numbers without needless decimals, lists with commas."""
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def in_words(words: Mapping[str, str]) -> str:
    """Words per language on one line: `en Contact us | zh 联系我们`."""
    return " | ".join(f"{language} {text}" for language, text in words.items())


def terminal_safe_json(data: Any) -> str:
    """Indented JSON whose strings hold no character a terminal acts on: each is a
    JSON escape instead (C0 ones already are), so the output still parses the same."""
    lines = json.dumps(data, ensure_ascii=False, indent=2).split("\n")
    return "\n".join("".join(_json_escape(c) for c in line) for line in lines)


def _json_escape(char: str) -> str:
    if unicodedata.category(char) not in ESCAPED_CATEGORIES:
        return char
    return "".join(f"\\u{unit:04x}" for unit in _utf16_units(char))


def _utf16_units(char: str) -> list[int]:
    data = char.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i:i + 2], "big") for i in range(0, len(data), 2)]


def init_app(app: Flask) -> None:
    """Register the command group."""
    app.cli.add_command(forms_cli)
