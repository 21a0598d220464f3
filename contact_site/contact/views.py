"""The contact page, its answers in HTML or JSON, and the health check."""

from __future__ import annotations

import hashlib
import hmac
import logging
from dataclasses import replace

from flask import Blueprint, current_app, jsonify, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from .. import ratelimit
from ..database import SQLITE_BUSY_TIMEOUT_MS, utcnow
from ..delivery import health, outbox
from ..devmail import is_direct_loopback
from ..errors import error_answer, error_class, is_unavailable, wants_json
from ..extensions import db
from ..ratelimit import limit_posts
from ..spam import Verdict, VerdictKind, issue_form_time, judge
from ..submissions.content import new_submission_key
from ..submissions.models import SPAM, Submission
from ..submissions.store import NewSubmission, store_submission
from . import uploads
from .forms import ContactForm
from .waker import wake_delivery

log = logging.getLogger("contact_site")
bp = Blueprint("contact", __name__)

NOT_SENT = _l("Nothing was sent. Please try again in a moment.")
FORM_EXPIRED = _l("The form's security token had expired or was not valid, so nothing was sent. "
                  "Your message is still here: check it and send it again.")
CHOOSE_FILE_AGAIN = _l("Choose your file again: a file cannot be kept for you when nothing "
                       "was sent.")
# The honeypot's catch is not judged further: its values were not even validated.
HONEYPOT = Verdict(VerdictKind.SPAM, ("honeypot",))


def render_form(form: ContactForm, status: int = 200,
                notice: str | None = None) -> tuple[str, int, dict[str, str]]:
    """The contact page with the form, its limits, its error messages and a notice if any."""
    if not form.submission_key.data:
        form.submission_key.data = new_submission_key()
    # A form sent again after an error keeps the time it was first served: a fresh one
    # would make a quick fix-and-resend look too fast.
    if not form.form_time.data:
        form.form_time.data = issue_form_time()
    config = current_app.config
    page = render_template(
        "contact/form.html", form=form, notice=notice,
        max_upload_mb=config["CONTACT_MAX_UPLOAD_MB"],
        max_upload_bytes=config["CONTACT_MAX_UPLOAD_BYTES"],
        allowed_extensions=config["CONTACT_ALLOWED_EXTENSIONS"],
        msg_too_large=uploads.too_large_message(), msg_bad_type=uploads.bad_type_message(),
    )
    # The page holds a token and a key for this visitor alone: no cache may keep it.
    return page, status, {"Cache-Control": "no-store"}


def ask_for_file_again(form: ContactForm) -> None:
    """A page cannot hand a file back to the browser: say so beside the field, if one was sent."""
    if any(file.filename for file in request.files.getlist("attachment")):
        form.attachment.errors = [str(CHOOSE_FILE_AGAIN)]


@bp.get("/")
def page() -> ResponseReturnValue:
    """The empty contact form."""
    return render_form(ContactForm(formdata=None))


@bp.post("/")
@limit_posts()
def submit() -> ResponseReturnValue:
    """Validate, store with the mails to send, wake delivery, answer (post/redirect/get)."""
    form = ContactForm()
    if form.honeypot_filled():
        spam = NewSubmission(form.submission_key_or_new(), form.spam_fields(),
                             remote_addr=request.remote_addr)
        return store_and_answer(form, spam, HONEYPOT)
    if not form.validate():
        if wants_json():
            return jsonify(errors=form.errors), 422
        return render_form(form, 422)
    data = NewSubmission(form.submission_key_or_new(), form.submission_fields(),
                         form.checked_upload, remote_addr=request.remote_addr)
    return store_and_answer(form, data)


def store_and_answer(form: ContactForm, data: NewSubmission,
                     verdict: Verdict | None = None) -> ResponseReturnValue:
    """Judge, store and answer as accepted (spam too), or 503 when the database cannot take it."""
    try:
        submission = store_now(data, verdict)
    except (SQLAlchemyError, OSError) as error:
        if not is_unavailable(error):
            raise
        return not_stored(form, data.key, error)
    except uploads.UploadQuotaExceeded as error:
        return no_room(form, data.key, error)
    if submission.verdict != SPAM:
        wake_delivery()
    return accepted(submission)


def store_now(data: NewSubmission, verdict: Verdict | None = None) -> Submission:
    """Judge (unless already judged) and store in one transaction whose lock waits are bounded.

    Judging writes (the proof is marked used), so
    it comes first, before this request's session takes a lock, and a database that
    cannot take those writes is answered like one that cannot take the submission.
    """
    failed = ratelimit.storage_error()
    if failed is not None:  # it failed moments ago in this request: do not wait on it again
        raise failed
    if verdict is None:
        verdict = judge(request.form, request.remote_addr, utcnow())
    if db.engine.dialect.name == "postgresql":
        # PostgreSQL waits for a lock for ever by default; SQLite has its busy timeout.
        db.session.execute(text(f"SET LOCAL lock_timeout = {SQLITE_BUSY_TIMEOUT_MS}"))
    judged = replace(data, verdict=str(verdict.kind), verdict_reasons=verdict.reasons_text())
    if judged.upload is not None and not judged.held:  # a held file is never stored
        uploads.ensure_room(judged.upload)
    return store_submission(judged, outbox.enqueue_submission, with_rows=verdict.remember)


def not_stored(form: ContactForm, key: str, error: BaseException) -> ResponseReturnValue:
    """503: nothing was kept; the form again with what the visitor typed, or a JSON error."""
    # The class only: an error's text may quote the statement and its values.
    log.warning("submission %s not stored: %s", key, error_class(error))
    try:
        db.session.rollback()
    except SQLAlchemyError:  # the connection is gone already: nothing to undo
        pass
    if wants_json():
        return jsonify(error=str(NOT_SENT)), 503
    ask_for_file_again(form)
    return render_form(form, 503, notice=str(NOT_SENT))


def no_room(form: ContactForm, key: str,
            error: uploads.UploadQuotaExceeded) -> ResponseReturnValue:
    """507: the upload folder is at its quota; nothing was kept; the form again, to send
    without the file, or a JSON error on the file."""
    log.warning("submission %s not stored: the upload folder is at CONTACT_UPLOAD_QUOTA_MB", key)
    db.session.rollback()
    if wants_json():
        return jsonify(errors={"attachment": [str(error)]}), 507
    form.attachment.errors = [str(error)]
    return render_form(form, 507)


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
    """200 `{"status": "ok"}`, or 503 without a database; the operator also gets the outbox
    counts, any SMTP configuration error and the verdicts of the last 24 hours."""
    detailed = operator_asking()
    # The operator's answer must not be kept by a cache and handed to the public.
    private = {"Cache-Control": "no-store"}
    try:
        db.session.execute(text("SELECT 1"))
        details = health.report() if detailed else {}
    except SQLAlchemyError:
        db.session.rollback()
        unreachable = {"error": "database unreachable"} if detailed else {}
        return jsonify(status="error", **unreachable), 503, private
    # Still 200 during an SMTP configuration error: the site takes messages and keeps them.
    return jsonify(status="ok", **details), 200, private


def operator_asking() -> bool:
    """Whether /healthz may show the outbox and SMTP state: `Authorization: Bearer
    HEALTHZ_TOKEN`, or a direct loopback client (the peer itself, never a forwarded one)."""
    token = current_app.config["HEALTHZ_TOKEN"]
    given = request.authorization
    if token and given is not None and given.type == "bearer" and given.token:
        # Digests compared: constant time, and the token's length is not told either.
        if hmac.compare_digest(hashlib.sha256(given.token.encode()).digest(),
                               hashlib.sha256(token.encode()).digest()):
            return True
    return is_direct_loopback(request.environ)


@bp.app_errorhandler(CSRFError)
def csrf_failed(error: CSRFError) -> ResponseReturnValue:
    """400: the security token is missing, wrong or expired; the contact form comes back filled."""
    if request.endpoint == "contact.submit" and not wants_json():
        # Not validated: only the token failed, and validating would fail on it again.
        form = ContactForm()
        ask_for_file_again(form)
        return render_form(form, 400, notice=str(FORM_EXPIRED))
    message = _("The form's security token is missing or has expired. "
                "Reload the page and send your message again.")
    return error_answer(400, _("The form has expired"), message, field="csrf_token")


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge) -> ResponseReturnValue:
    """413 naming the limit, whether the body or the file alone was too big."""
    return error_answer(413, _("The file is too large"), uploads.too_large_message(), "attachment")
