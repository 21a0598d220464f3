"""The contact page, its answers in HTML or JSON, and the health check."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from ..delivery import outbox
from ..delivery.backend import backend_of
from ..errors import error_answer, wants_json
from ..extensions import db
from ..ratelimit import limit_posts
from ..submissions.models import Submission
from ..submissions.store import NewSubmission, store_submission
from . import uploads
from .forms import ContactForm, new_submission_key

bp = Blueprint("contact", __name__)


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
def page() -> ResponseReturnValue:
    """The empty contact form."""
    return render_form(ContactForm(formdata=None))


@bp.post("/")
@limit_posts()
def submit() -> ResponseReturnValue:
    """Validate, store with the mails to send, wake delivery, answer (post/redirect/get)."""
    form = ContactForm()
    if form.is_spam():
        spam = NewSubmission(form.submission_key_or_new(), form.spam_fields(), is_spam=True,
                             remote_addr=request.remote_addr)
        return accepted(store_submission(spam, outbox.enqueue_submission))
    if not form.validate():
        if wants_json():
            return jsonify(errors=form.errors), 422
        return render_form(form, 422)
    data = NewSubmission(form.submission_key_or_new(), form.submission_fields(),
                         form.checked_upload, remote_addr=request.remote_addr)
    submission = store_submission(data, outbox.enqueue_submission)
    backend_of().wake()
    return accepted(submission)


def accepted(submission: Submission) -> ResponseReturnValue:
    """303 to /thanks, or 202 with the submission's id for JSON clients."""
    if wants_json():
        return jsonify(id=submission.id, status="queued"), 202
    return redirect(url_for("contact.thanks"), code=303)


@bp.get("/thanks")
def thanks() -> ResponseReturnValue:
    """What happens next, after a message was accepted."""
    return render_template("contact/thanks.html")


@bp.get("/healthz")
def healthz() -> ResponseReturnValue:
    """200 with the outbox counts, 503 when the database cannot be reached."""
    try:
        db.session.execute(text("SELECT 1"))
        counts = outbox.status_counts()
    except SQLAlchemyError:
        db.session.rollback()
        return jsonify(status="error", error="database unreachable"), 503
    return jsonify(status="ok", outbox=counts)


@bp.app_errorhandler(CSRFError)
def csrf_failed(error: CSRFError) -> ResponseReturnValue:
    """400: the form's security token is missing, wrong or expired."""
    message = ("The form's security token is missing or has expired. "
               "Reload the page and send your message again.")
    return error_answer(400, "The form has expired", message, field="csrf_token")


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge) -> ResponseReturnValue:
    """413 naming the limit, whether the body or the file alone was too big."""
    return error_answer(413, "The file is too large", uploads.too_large_message(), "attachment")
