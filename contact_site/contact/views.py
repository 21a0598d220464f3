"""The contact page, its answers in HTML or JSON, and the health check."""

from __future__ import annotations

import hashlib
import hmac
import logging
from pathlib import Path

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    send_from_directory,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import RequestEntityTooLarge

from .. import embedding
from ..delivery import health
from ..devmail import is_direct_loopback
from ..embedding import tokens
from ..errors import error_answer, error_class, is_unavailable, wants_json
from ..extensions import db
from ..forms import Form, declaration_of, form_of
from ..ratelimit import limit_posts
from ..security import CONTENT_SECURITY_POLICY
from ..spam import Verdict, issue_form_time
from ..submissions.models import SPAM, Submission
from ..submissions.queries import find_by_key
from ..submissions.store import NewSubmission
from . import intake, uploads
from .forms import SubmissionForm, form_class
from .page import ask_for_file_again, render_form, thanks_url
from .waker import wake_delivery

log = logging.getLogger("contact_site")
bp = Blueprint("contact", __name__)
# embed.js changes with a release: an hour of cache keeps pages quick and updates quick.
EMBED_SCRIPT_MAX_AGE = 3600

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
    """Admit, validate, store with the mails to send, wake delivery, answer (post/redirect/get)."""
    declared = declared_form(slug)
    arrival = embedding.admit(declared)
    if arrival.token is not None:
        first = find_by_key(arrival.token.nonce)
        if first is not None:  # a token is used once: its second POST is answered like its first
            return accepted(first, arrival)
    form = form_class(declared)(meta={"csrf": arrival.checks_csrf})
    if arrival.token is not None:
        form.submission_key.data = arrival.token.nonce
        form.form_time.data = issue_form_time(arrival.token.served_at)
    if form.honeypot_filled():
        spam = NewSubmission(form.submission_key_or_new(), form.spam_fields(),
                             remote_addr=request.remote_addr, once=arrival.token is not None)
        return store_and_answer(form, spam, arrival, intake.HONEYPOT)
    if not form.validate():
        if wants_json():
            return jsonify(errors=form.errors), 422
        if is_framed(arrival):
            return framed_form(form, 422)
        if arrival.checks_csrf:
            return render_form(form, 422)
        return corrected_here(form, arrival)
    data = NewSubmission(form.submission_key_or_new(), form.submission_fields(),
                         tuple(form.uploads()), remote_addr=request.remote_addr,
                         thank_you=form.declared.thank_you, once=arrival.token is not None)
    return store_and_answer(form, data, arrival)


def is_framed(arrival: embedding.Arrival) -> bool:
    """The form was sent from its iframe: this site's own origin, with a token."""
    return arrival.token is not None and arrival.caller.own


def framed_form(form: SubmissionForm, status: int = 200) -> ResponseReturnValue:
    """The form in its iframe, with a token (the one posted, else a new one) and the parent
    page's origin it tells its height to, when that is an allowed one."""
    declared = form.declared
    parent = embedding.origins.origin_of_url(
        request.values.get(embedding.PARENT_FIELD) or request.args.get("origin") or "")
    page, status, headers = render_form(
        form, status, template="contact/embed.html", embedded=True,
        token_field=request.form.get(tokens.FIELD) or tokens.issue(declared.slug),
        parent_origin=parent if embedding.origins.allows(declared, parent) else None)
    return page, status, {**headers, **frame_headers(declared)}


def corrected_here(form: SubmissionForm, arrival: embedding.Arrival) -> ResponseReturnValue:
    """A plain form from another site with errors: this site's own page (422) keeps what was
    typed, with a CSRF token for the corrected send, `_next`, and a link back."""
    page_form = form_class(form.declared)()  # the same posted values, and a CSRF token
    for field in form:
        if field.name in page_form:
            page_form[field.name].errors = field.errors
    page, status, headers = render_form(page_form, 422, back_url=back_url(arrival),
                                        next_url=arrival.next_url)
    if arrival.next_url:  # the corrected send is redirected there: a form action it may take
        target = embedding.origins.origin_of_url(arrival.next_url)
        headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY.replace(
            "form-action 'self'", f"form-action 'self' {target}")
    return page, status, headers


def back_url(arrival: embedding.Arrival) -> str | None:
    """Where a plain form on another site came from: `_next`'s page, else the Referer."""
    if arrival.checks_csrf or arrival.token is not None:
        return None
    referer = request.headers.get("Referer") or ""
    origin = embedding.origins.origin_of_url(referer)
    return arrival.next_url or (referer if origin and origin == arrival.caller.origin else None)


def store_and_answer(form: SubmissionForm, data: NewSubmission, arrival: embedding.Arrival,
                     verdict: Verdict | None = None) -> ResponseReturnValue:
    """Judge, store and answer as accepted (spam too), or 503 when the database cannot take it."""
    try:
        submission = intake.take(data, form.posted_values(), verdict, arrival.reasons)
    except (SQLAlchemyError, OSError) as error:
        if not is_unavailable(error):
            raise
        return not_stored(form, data.key, error)
    except uploads.UploadQuotaExceeded as error:
        return no_room(form, data.key, error)
    if submission.verdict != SPAM:
        wake_delivery()
    return accepted(submission, arrival)


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


def accepted(submission: Submission, arrival: embedding.Arrival) -> ResponseReturnValue:
    """303 to `_next` (a page of an allowed origin) or the thanks page, or 202 with the
    submission's id for JSON clients."""
    if wants_json():
        return jsonify(id=submission.id, status="queued"), 202
    framed = is_framed(arrival)
    parent = request.form.get(embedding.PARENT_FIELD) if framed else None
    return redirect(arrival.next_url or thanks_url(submission.form_slug, framed, parent=parent),
                    code=303)


@bp.get("/thanks")
def thanks() -> ResponseReturnValue:
    """What happens next, after a message was accepted (?form=: which form it went through;
    ?embed=1: inside that form's iframe)."""
    declared = form_of(request.args.get("form")) or declaration_of().forms[0]
    first = declared.slug == declaration_of().forms[0].slug
    framed = request.args.get("embed") == "1"
    parent = embedding.origins.origin_of_url(request.args.get("origin") or "")
    parent = parent if framed and embedding.origins.allows(declared, parent) else None
    endpoint = "contact.embedded" if framed else "contact.page"
    form_url = url_for(endpoint, slug=declared.slug if framed or not first else None,
                       origin=parent)
    page = render_template("contact/thanks.html", declared=declared, form_url=form_url,
                           embedded=framed, parent_origin=parent)
    return page, 200, frame_headers(declared) if framed else {}


def frame_headers(declared: Form) -> dict[str, str]:
    """A page the form's allowed origins may frame, and no one else (nobody, without them:
    then X-Frame-Options says so to older browsers too)."""
    headers = {"Content-Security-Policy": embedding.frame_ancestors(declared)}
    if not declared.allowed_origins:
        headers["X-Frame-Options"] = "DENY"
    return headers


@bp.get("/f/<slug>/token")
def token(slug: str) -> ResponseReturnValue:
    """A one-time token for the form, in place of the CSRF cookie (embed script)."""
    declared = declared_form(slug)
    # Each is for one visitor and one message: no cache may keep or share it.
    return jsonify(token=tokens.issue(declared.slug)), 200, {"Cache-Control": "no-store"}


@bp.get("/f/<slug>/fragment")
def fragment(slug: str) -> ResponseReturnValue:
    """The form alone, its addresses absolute, for the embed script to put in a page."""
    form = form_class(declared_form(slug))(formdata=None, meta={"csrf": False})
    return render_form(form, template="contact/fragment.html", token_field="")


@bp.get("/f/<slug>/embed")
def embedded(slug: str) -> ResponseReturnValue:
    """The form alone as a page of its own, for an iframe on the form's allowed origins."""
    return framed_form(form_class(declared_form(slug))(formdata=None, meta={"csrf": False}))


@bp.get("/embed.js")
def embed_script() -> ResponseReturnValue:
    """The script another site's page includes; cached an hour, as any page's script."""
    response = send_from_directory(Path(current_app.root_path) / "static", "embed.js",
                                   max_age=EMBED_SCRIPT_MAX_AGE)
    response.headers["Access-Control-Allow-Origin"] = "*"  # public code, no credentials
    return response


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


@bp.app_errorhandler(embedding.OriginRefused)
def origin_refused(error: embedding.OriginRefused) -> ResponseReturnValue:
    """403 in one sentence: this form does not take submissions from that site."""
    return error_answer(403, _("Not sent"), embedding.refused_origin_message(error.origin))


@bp.app_errorhandler(embedding.TokenRefused)
def token_refused(error: embedding.TokenRefused) -> ResponseReturnValue:
    """400: the form's one-time token is not valid or too old: reload and send again."""
    return error_answer(400, _("The form has expired"), str(FORM_EXPIRED), field="csrf_token")


@bp.app_errorhandler(RequestEntityTooLarge)
def too_large(error: RequestEntityTooLarge) -> ResponseReturnValue:
    """413 naming the limit, whether the body or a file alone was too big."""
    if isinstance(error, uploads.UploadTooLarge):
        return error_answer(413, _("The file is too large"), str(error.description), error.field)
    return error_answer(413, _("The file is too large"), uploads.too_large_message(), "attachment")
