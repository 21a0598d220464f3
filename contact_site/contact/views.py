"""The contact page, its answers in HTML or JSON, and the health check."""

from __future__ import annotations

import hashlib
import hmac
import logging

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from ..delivery import health
from ..devmail import is_direct_loopback
from ..errors import error_answer, error_class, is_unavailable, wants_json
from ..extensions import db
from ..forms import Form, declaration_of, form_of
from ..ratelimit import limit_posts
from ..spam import Verdict
from ..submissions.models import SPAM, Submission
from ..submissions.store import NewSubmission
from . import intake, uploads
from .forms import SubmissionForm, form_class
from .page import ask_for_file_again, render_form, thanks_url
from .waker import wake_delivery

log = logging.getLogger("contact_site")
bp = Blueprint("contact", __name__)

NOT_SENT = _l("Nothing was sent. Please try again in a moment.")
FORM_EXPIRED = _l("The form's security token had expired or was not valid, so nothing was sent. "
                  "Your message is still here: check it and send it again.")


def declared_form(slug: str | None) -> Form:
    """The form served at this address: 404 for a slug the forms file does not declare."""
    found = form_of(slug)
    if found is None:
        abort(404)
    return found


@bp.get("/", defaults={"slug": None})
@bp.get("/f/<slug>")
def page(slug: str | None) -> ResponseReturnValue:
    """The empty form: the first declared one at /, each at /f/<slug>."""
    return render_form(form_class(declared_form(slug))(formdata=None))


@bp.post("/", defaults={"slug": None})
@bp.post("/f/<slug>")
@limit_posts()
def submit(slug: str | None) -> ResponseReturnValue:
    """Validate, store with the mails to send, wake delivery, answer (post/redirect/get)."""
    form = form_class(declared_form(slug))()
    if form.honeypot_filled():
        spam = NewSubmission(form.submission_key_or_new(), form.spam_fields(),
                             remote_addr=request.remote_addr)
        return store_and_answer(form, spam, intake.HONEYPOT)
    if not form.validate():
        if wants_json():
            return jsonify(errors=form.errors), 422
        return render_form(form, 422)
    data = NewSubmission(form.submission_key_or_new(), form.submission_fields(),
                         tuple(form.uploads()), remote_addr=request.remote_addr,
                         thank_you=form.declared.thank_you)
    return store_and_answer(form, data)


def store_and_answer(form: SubmissionForm, data: NewSubmission,
                     verdict: Verdict | None = None) -> ResponseReturnValue:
    """Judge, store and answer as accepted (spam too), or 503 when the database cannot take it."""
    try:
        submission = intake.take(data, request.form, verdict)
    except (SQLAlchemyError, OSError) as error:
        if not is_unavailable(error):
            raise
        return not_stored(form, data.key, error)
    except uploads.UploadQuotaExceeded as error:
        return no_room(form, data.key, error)
    if submission.verdict != SPAM:
        wake_delivery()
    return accepted(submission)


def not_stored(form: SubmissionForm, key: str, error: BaseException) -> ResponseReturnValue:
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


def no_room(form: SubmissionForm, key: str,
            error: uploads.UploadQuotaExceeded) -> ResponseReturnValue:
    """507: the upload folder is at its quota; nothing was kept; the form again, to send
    without the files, or a JSON error on each file field that had one."""
    log.warning("submission %s not stored: the upload folder is at CONTACT_UPLOAD_QUOTA_MB", key)
    db.session.rollback()
    fields = sorted({name for name, _upload in form.uploads()})
    if wants_json():
        return jsonify(errors={name: [str(error)] for name in fields}), 507
    for name in fields:
        form[name].errors = [str(error)]
    return render_form(form, 507)


def accepted(submission: Submission) -> ResponseReturnValue:
    """303 to the thanks page (naming any form but the first), or 202 with the submission's
    id for JSON clients."""
    if wants_json():
        return jsonify(id=submission.id, status="queued"), 202
    return redirect(thanks_url(submission.form_slug), code=303)


@bp.get("/thanks")
def thanks() -> ResponseReturnValue:
    """What happens next, after a message was accepted (?form=: which form it went through)."""
    declared = form_of(request.args.get("form")) or declaration_of().forms[0]
    first = declared.slug == declaration_of().forms[0].slug
    form_url = url_for("contact.page", slug=None if first else declared.slug)
    return render_template("contact/thanks.html", declared=declared, form_url=form_url)


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
    declared = form_of((request.view_args or {}).get("slug"))
    if request.endpoint == "contact.submit" and declared is not None and not wants_json():
        # Not validated: only the token failed, and validating would fail on it again.
        form = form_class(declared)()
        ask_for_file_again(form)
        return render_form(form, 400, notice=str(FORM_EXPIRED))
    message = _("The form's security token is missing or has expired. "
                "Reload the page and send your message again.")
    return error_answer(400, _("The form has expired"), message, field="csrf_token")


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge) -> ResponseReturnValue:
    """413 naming the limit, whether the body or a file alone was too big."""
    if isinstance(error, uploads.UploadTooLarge):
        return error_answer(413, _("The file is too large"), str(error.description), error.field)
    return error_answer(413, _("The file is too large"), uploads.too_large_message(), "attachment")
