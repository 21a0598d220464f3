"""The console's forms; every one carries the CSRF token (Flask-WTF)."""

from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField
from wtforms import PasswordField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional

from ..submissions.models import EMAIL_COLUMN
from ..submissions.thread import NOTE_MAX, REPLY_MAX
from .auth import PASSWORD_MAX, USERNAME_MAX
from .twofactor import CODE_MAX


class SignInForm(FlaskForm):
    """Username and password."""

    # The lengths bound the work a sign-in costs; a longer answer is simply wrong.
    username = StringField(_l("Username"),
                           validators=[DataRequired(), Length(max=USERNAME_MAX)],
                           render_kw={"autocomplete": "username", "autocapitalize": "none",
                                      "spellcheck": "false"})
    password = PasswordField(_l("Password"),
                             validators=[DataRequired(), Length(max=PASSWORD_MAX)],
                             render_kw={"autocomplete": "current-password"})


class EraseForm(FlaskForm):
    """The address whose every trace is to be removed."""

    address = StringField(_l("Email address"),
                          validators=[DataRequired(), Length(max=EMAIL_COLUMN)],
                          render_kw={"autocomplete": "off", "spellcheck": "false",
                                     "inputmode": "email"})


class ReplyForm(FlaskForm):
    """The owner's answer to the visitor, and an optional file."""

    body = TextAreaField(_l("Your reply"), validators=[DataRequired(), Length(max=REPLY_MAX)],
                         render_kw={"rows": 8})
    attachment = FileField(_l("Attach a file (optional)"))


class NoteForm(FlaskForm):
    """A note kept on the message, never mailed."""

    text = TextAreaField(_l("Note"), validators=[DataRequired(), Length(max=NOTE_MAX)],
                         render_kw={"rows": 3})


class CodeForm(FlaskForm):
    """A code from the authenticator app (or, at sign-in, a recovery code)."""

    code = StringField(_l("Code"), validators=[DataRequired(), Length(max=CODE_MAX)],
                       render_kw={"autocomplete": "one-time-code", "autocapitalize": "none",
                                  "spellcheck": "false"})


class ReauthForm(FlaskForm):
    """The account's password, or a code from its authenticator app."""

    password = PasswordField(_l("Password"),
                             validators=[Optional(), Length(max=PASSWORD_MAX)],
                             render_kw={"autocomplete": "current-password"})
    code = StringField(_l("Or a code from your authenticator app"),
                       validators=[Optional(), Length(max=CODE_MAX)],
                       render_kw={"autocomplete": "one-time-code", "inputmode": "numeric",
                                  "autocapitalize": "none", "spellcheck": "false"})
