"""The contact page, its answers in HTML or JSON, and the health check."""

from __future__ import annotations

from typing import Any

from flask import (
    Blueprint,
    Flask,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from . import outbox, uploads
from .db import db
from .forms import KEY_PATTERN, ContactForm, new_submission_key
from .limiter import limit_posts
from .submissions import ContactData, Submission, store_submission

bp = Blueprint("contact", __name__)


def wants_json() -> bool:
    """True when the client prefers JSON to HTML (`Accept: application/json`)."""
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json"


def render_form(form: ContactForm, status: int = 200) -> tuple[str, int]:
    """The contact page with the form, its limits and its error messages."""
    if not form.submission_key.data:
        form.submission_key.data = new_submission_key()
    config = current_app.config
    return render_template(
        "contact/form.html", form=form, max_upload_mb=config["CONTACT_MAX_UPLOAD_MB"],
        max_upload_bytes=config["CONTACT_MAX_UPLOAD_BYTES"],
        allowed_extensions=config["CONTACT_ALLOWED_EXTENSIONS"],
        msg_too_large=uploads.too_large_message(), msg_bad_type=uploads.bad_type_message(),
    ), status


@bp.get("/")
def page() -> Any:
    """The empty contact form."""
    return render_form(ContactForm(formdata=None))


@bp.post("/")
@limit_posts()
def submit() -> Any:
    """Validate, store with the mails to send, wake delivery, answer (post/redirect/get)."""
    form = ContactForm()
    if form.is_spam():
        return accepted(store_submission(spam_data(form)))
    if not form.validate():
        if wants_json():
            return jsonify(errors=form.errors), 422
        return render_form(form, 422)
    submission = store_submission(contact_data(form))
    current_app.extensions["contact_delivery"].wake()
    return accepted(submission)


def accepted(submission: Submission) -> Any:
    """303 to /thanks, or 202 with the submission's id for JSON clients."""
    if wants_json():
        return jsonify(id=submission.id, status="queued"), 202
    return redirect(url_for("contact.thanks"), code=303)


def contact_data(form: ContactForm) -> ContactData:
    """The validated values, in the shape the storage takes."""
    return ContactData(
        submission_key=form.submission_key.data or new_submission_key(),
        recipient=form.chosen_recipient(), name=form.name.data or "", email=form.email.data,
        subject=form.subject.data, message=form.message.data, upload=form.checked_upload,
        is_spam=False, remote_addr=request.remote_addr,
    )


def spam_data(form: ContactForm) -> ContactData:
    """What a bot posted, cut to fit, kept for the record and never mailed."""
    def cut(value: Any, size: int) -> str:
        # PostgreSQL cannot store NUL in text: keep a visible stand-in.
        return str(value or "")[:size].replace("\x00", "\ufffd")

    key = form.submission_key.data
    return ContactData(
        submission_key=key if key and KEY_PATTERN.fullmatch(key) else new_submission_key(),
        recipient=form.recipients[0], name=cut(form.name.data, 100),
        email=cut(form.email.data, 320), subject=cut(form.subject.data, 200),
        message=cut(form.message.data, 10000), upload=None, is_spam=True,
        remote_addr=request.remote_addr,
    )


@bp.get("/thanks")
def thanks() -> Any:
    """What happens next, after a message was accepted."""
    return render_template("contact/thanks.html")


@bp.get("/healthz")
def healthz() -> Any:
    """200 with the outbox counts, 503 when the database cannot be reached."""
    try:
        db.session.execute(text("SELECT 1"))
        counts = outbox.status_counts()
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify(status="error", error="database unreachable"), 503
    return jsonify(status="ok", outbox=counts)


def error_answer(code: int, title: str, message: str, field: str | None = None) -> Any:
    """An error page or JSON body with plain words."""
    if wants_json():
        body = {"errors": {field: [message]}} if field else {"error": message}
        return jsonify(body), code
    return render_template("errors/error.html", code=code, title=title, message=message), code


def csrf_failed(error: CSRFError) -> Any:
    """400: the form's security token is missing, wrong or expired."""
    message = ("The form's security token is missing or has expired. "
               "Reload the page and send your message again.")
    return error_answer(400, "The form has expired", message, field="csrf_token")


def too_large(error: RequestEntityTooLarge) -> Any:
    """413 naming the limit, whether the body or the file alone was too big."""
    return error_answer(413, "The file is too large", uploads.too_large_message(), "attachment")


def other_http_error(error: HTTPException) -> Any:
    """Every other HTTP error, in the client's format, without a stack trace."""
    response = error.get_response()
    answer = error_answer(error.code or 500, error.name, error.description or error.name)
    if isinstance(answer, tuple) and isinstance(response, Response):
        for header in ("Retry-After", "Allow"):
            if header in response.headers:
                answer = (answer[0], answer[1], {header: response.headers[header]})
    return answer


def init_app(app: Flask) -> None:
    """Register the blueprint and the error handlers."""
    app.register_blueprint(bp)
    app.register_error_handler(CSRFError, csrf_failed)
    app.register_error_handler(RequestEntityTooLarge, too_large)
    app.register_error_handler(HTTPException, other_http_error)
