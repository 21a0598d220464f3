"""The forms of the site, declared once in the forms file (CONTACT_FORMS_FILE).

Without the file the site has the one built-in form. Either way the declaration is
read at start-up, completed from the settings (recipients, the recipient's choice)
and kept as the app's state; the page, validation, storage, mails, console and
exports all read it from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask, current_app
from flask_babel import gettext

from ..app_state import state_of
from ..config import Recipient
from .declaration import (
    Declaration,
    Field,
    Form,
    FormsFileError,
    LocalTextValue,
    Webhook,
    default_declaration,
    load_forms,
)

__all__ = ["Declaration", "Field", "Form", "FormsFileError", "Webhook", "declaration_of",
           "form_of", "init_app", "load_declaration", "local_text"]


@dataclass
class FormsState:
    """The declaration this app serves, completed from the settings."""

    declaration: Declaration | None = None


def load_declaration(config: Any) -> Declaration:
    """The forms file named by CONTACT_FORMS_FILE (or the built-in form), completed."""
    recipients: tuple[Recipient, ...] = config["CONTACT_RECIPIENTS"]
    path = config.get("CONTACT_FORMS_FILE")
    if not path:
        return default_declaration(recipients)
    return load_forms(path, config["CONTACT_LANGUAGES"]).completed(recipients)


def declaration_of(app: Flask | None = None) -> Declaration:
    """The app's declaration (the current app's by default)."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    found = state_of(app, FormsState).declaration
    if found is None:
        raise RuntimeError("contact_site.forms.init_app has not run for this app")
    return found


def form_of(slug: str | None) -> Form | None:
    """The form served at /f/<slug>; the first form for None."""
    declaration = declaration_of()
    return declaration.forms[0] if slug is None else declaration.form(slug)


def local_text(text: LocalTextValue, language: str) -> str:
    """Declared words in one language: its entry of a table (else the first), or a string.

    A plain string goes through the catalogue, so the built-in form's labels are
    translated; an owner's own words have no entry there and stay as written.
    """
    if isinstance(text, str):
        return gettext(text) if text else text
    return text.get(language) or next(iter(text.values()))


def init_app(app: Flask) -> None:
    """Read the declaration; a bad file stops start-up with one line."""
    state_of(app, FormsState).declaration = load_declaration(app.config)
