"""The baseline: a contact form written the tutorials' way, for the side-by-side benchmark.

Flask-WTF for the form and its CSRF token, Flask-Mail for the mail, and one thread
per mail started from the request (Miguel Grinberg's `send_async_email`): nothing
is stored, nothing is retried, a mail sent while the server is down is lost.
Serve it with `gunicorn benchmarks.tutorial_app:app`; the settings come from the
same MAIL_* variables as the product's.
"""

from __future__ import annotations

import os
from pathlib import Path
from threading import Thread

from flask import Flask, redirect, render_template_string, url_for
from flask.typing import ResponseReturnValue
from flask_mail import Mail, Message
from flask_wtf import FlaskForm
from wtforms import EmailField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Email, Length, Optional

ROOT = Path(__file__).resolve().parent.parent
PAGE = """<!doctype html><title>Contact</title>
<form method="post">{{ form.csrf_token }}
{{ form.recipient }} {{ form.name }} {{ form.email }} {{ form.subject }} {{ form.message }}
<button>Send</button></form>{% for e in form.errors.values() %}<p>{{ e }}</p>{% endfor %}"""

app = Flask(__name__)
app.config.update(
    SECRET_KEY=os.environ.get("SECRET_KEY", "tutorial-secret-key-0123456789"),
    MAIL_SERVER=os.environ.get("MAIL_SERVER", "localhost"),
    MAIL_PORT=int(os.environ.get("MAIL_PORT", "25")),
    MAIL_DEFAULT_SENDER=os.environ.get("MAIL_DEFAULT_SENDER", "noreply@example.org"),
)
mail = Mail(app)


class ContactForm(FlaskForm):
    """The form, as the tutorials write it."""

    recipient = SelectField(choices=[("sales", "Sales")])
    name = StringField(validators=[Optional(), Length(max=100)])
    email = EmailField(validators=[DataRequired(), Email()])
    subject = StringField(validators=[DataRequired(), Length(max=200)])
    message = TextAreaField(validators=[DataRequired(), Length(max=10000)])


def send_async_email(flask_app: Flask, msg: Message) -> None:
    """Send one mail in its own thread, the tutorials' way."""
    with flask_app.app_context():
        mail.send(msg)


def send_email(msg: Message) -> None:
    """Fire and forget: a thread per mail."""
    Thread(target=send_async_email, args=(app, msg)).start()


@app.route("/", methods=["GET", "POST"])
def contact() -> ResponseReturnValue:
    """The form; on a valid POST, the owner's mail and the thank-you, each in a thread."""
    form = ContactForm()
    if form.validate_on_submit():
        owner = Message(f"[Contact] {form.subject.data}", recipients=["sales@example.com"],
                        reply_to=form.email.data,
                        body=f"From {form.name.data} <{form.email.data}>\n\n{form.message.data}")
        send_email(owner)
        thanks = Message("Thank you for your message", recipients=[form.email.data],
                         body="Thank you, we will answer soon.")
        with app.open_resource(ROOT / "static" / "thank-you.pdf") as pdf:
            thanks.attach("thank-you.pdf", "application/pdf", pdf.read())
        send_email(thanks)
        return redirect(url_for("thanks"), code=303)
    return render_template_string(PAGE, form=form)


@app.route("/thanks")
def thanks() -> str:
    """The thank-you page."""
    return "Thank you."
