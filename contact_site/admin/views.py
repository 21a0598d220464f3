"""The console's pages: sign-in, the archive, one submission, the outbox, export, erasure, audit."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    g,
    redirect,
    render_template,
    request,
    send_file,
    session,
    stream_with_context,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_babel import ngettext
from flask_login import current_user, logout_user
from flask_wtf.csrf import CSRFError
from sqlalchemy import Select

from ..contact import uploads
from ..database import utcnow
from ..delivery import health, outbox
from ..delivery.models import MailKind
from ..errors import error_answer
from ..extensions import db
from ..forms import Form, declaration_of, local_text
from ..i18n import owner_language
from ..paths import account_command
from ..records import archive, export, privacy
from ..submissions import queries
from ..submissions.answers import answers_of
from ..submissions.models import (
    ANSWERED,
    ARCHIVED,
    INFECTED,
    NEW,
    READ,
    SLUG_MAX,
    STATES,
    Submission,
    SubmissionFile,
)
from . import actions, audit, auth, lockout, scope, signin, thread, twofactor
from .forms import EraseForm, NoteForm, ReplyForm, SignInForm
from .session import IDLE_LIMIT

bp = Blueprint("admin", __name__)
# The sign-in steps: open without a signed-in account.
PUBLIC_ENDPOINTS = frozenset({"admin.login", "admin.login_code", "admin.passkey_options",
                              "admin.passkey_login"})
PER_PAGE = 50
SEARCH_MAX = 200
# What the owner is told once a message's state is set.
STATE_NOTICES = {NEW: _l("Marked as new."), READ: _l("Marked as read."),
                 ANSWERED: _l("Marked as answered."), ARCHIVED: _l("Archived.")}


def owner() -> str:
    """The signed-in owner's username, for the audit log."""
    return str(current_user.username)


@bp.before_request
def require_owner() -> ResponseReturnValue | None:
    """Every page but sign-in needs a signed-in owner whose session is not idle too long."""
    if request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        wanted = request.full_path.rstrip("?") if request.method == "GET" else None
        return redirect(url_for("admin.login", next=wanted))
    if auth.idle_too_long(IDLE_LIMIT.total_seconds()):
        logout_user()
        session.clear()
        flash(_("You were signed out after 12 hours without activity."))
        return redirect(url_for("admin.login"))
    auth.mark_seen()
    if twofactor.must_enrol(current_user) and request.endpoint not in twofactor.ENROL_ENDPOINTS:
        flash(_("This site asks every account for a second factor: add one to go on."))
        return redirect(url_for("admin.account"))
    if request.endpoint in scope.OWNER_ONLY and not scope.is_owner():
        return error_answer(403, _("Not for your account"),
                            _("Only an owner of this site can do this. Ask an owner if it "
                              "needs doing."))
    return None


def console_text(text: Any) -> str:
    """Declared words (a label, a title, a consent's text) in the console's language."""
    return local_text(text, owner_language())


def new_count() -> int:
    """How many messages are new, counted once a request (the header and the title show it)."""
    if "new_count" not in g:
        g.new_count = archive.new_count(scope.condition())
    return int(g.new_count)


@bp.context_processor
def console_context() -> dict[str, Any]:
    """The signed-in owner, the count of new messages (asked for by the pages that show it),
    the declared words' translator and how a webhook's URL is shown (cut short: its path
    may hold a token), for every console template."""
    return {"current_user": current_user, "new_count": new_count, "local_text": console_text,
            "is_owner": scope.is_owner,
            "webhook_target": health.shown_target}


@bp.errorhandler(CSRFError)
def csrf_failed(error: CSRFError) -> ResponseReturnValue:
    """400 in the console's words: the page's security token is missing or too old."""
    return error_answer(400, _("The page has expired"),
                        _("The page's security token is missing or has expired. "
                          "Go back, reload the page and try again."), field="csrf_token")


def safe_next(target: str | None) -> str:
    """Where to go after signing in: a console path only, never another site."""
    home = url_for("admin.index")
    if target and target.startswith(home) and not any(c in target for c in "\\\r\n"):
        return target
    return home


@bp.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    """The sign-in form; a guesser's network gets 429 (lockout.py says when), never the owner's."""
    if current_user.is_authenticated:
        return redirect(url_for("admin.index"))
    if auth.account_count() == 0:
        return render_template("admin/login.html", form=None, no_account=True,
                               command=account_command(current_app.debug))
    form = SignInForm()
    if request.method == "GET":
        return render_template("admin/login.html", form=form)
    name = form.username.data or ""
    attempt = lockout.begin(name)  # counted before the password is checked
    if attempt.retry_after is not None:
        return (render_template("admin/login.html", form=form, locked=True), 429,
                {"Retry-After": str(attempt.retry_after)})
    user = auth.authenticate(name, form.password.data or "") if form.validate() else None
    if user is None:
        lockout.failed(attempt)
        known = auth.find_user(name) if auth.USERNAME_PATTERN.fullmatch(name.lower()) else None
        if known is not None:  # unknown names are not logged: they may be mistyped passwords
            audit.record("sign-in refused", known.username)
        return render_template("admin/login.html", form=form, wrong=True), 422
    lockout.succeeded(attempt)
    target = safe_next(request.args.get("next"))
    if twofactor.has_second_factor(user):
        signin.remember_pending(user)
        return redirect(url_for("admin.login_code", next=target), code=303)
    return signin.complete(user, "password", target)


@bp.post("/logout")
def logout() -> ResponseReturnValue:
    """Sign out, ending every session of the account, copied cookies included."""
    user = current_user._get_current_object()
    auth.revoke_sessions(user)
    audit.record("sign-out", user.username)
    logout_user()
    session.clear()
    flash(_("You are signed out."))
    return redirect(url_for("admin.login"), code=303)


@dataclass(frozen=True)
class ListFilters:
    """The list's search text, status filter, form (its slug) and state filter."""

    q: str
    status: str
    form: str | None
    state: str  # archive.STATE_FILTERS, or archive.UNARCHIVED (no ?state=)

    def query(self) -> Select[tuple[Submission]]:
        """The submissions they select, newest first."""
        return scope.visible(archive.filtered(self.q, self.status, self.form, self.state))

    def args(self) -> dict[str, str | None]:
        """As the query string of a link to the same list (empty ones left out)."""
        return {"q": self.q or None, "status": self.status, "form": self.form,
                "state": self.state or None}


def _filters() -> ListFilters:
    """The filters of this request; 400 for an unknown status or state filter (an unknown
    form simply matches nothing)."""
    status = request.args.get("status", "all")
    if status not in archive.FILTERS:
        abort(400, description=_("Unknown status filter. Use one of: %(filters)s.",
                                 filters=", ".join(archive.FILTERS)))
    state = request.args.get("state", archive.UNARCHIVED)
    if state not in (archive.UNARCHIVED, *archive.STATE_FILTERS):
        abort(400, description=_("Unknown state filter. Use one of: %(filters)s.",
                                 filters=", ".join(archive.STATE_FILTERS)))
    return ListFilters(request.args.get("q", "").strip()[:SEARCH_MAX], status,
                       request.args.get("form", "").strip()[:SLUG_MAX] or None, state)


@bp.get("/")
def index() -> ResponseReturnValue:
    """The submissions, newest first, 50 a page, searched and filtered (archived ones only
    when asked for)."""
    filters = _filters()
    page = db.paginate(filters.query(), page=max(request.args.get(
        "page", 1, type=int) or 1, 1), per_page=PER_PAGE, error_out=False)
    states = actions.mail_states(submission.id for submission in page.items)
    return render_template("admin/index.html", page=page, states=states, filters=filters,
                           forms=declaration_of().forms, status_filters=archive.FILTERS,
                           state_filters=archive.STATE_FILTERS)


def _submission(submission_id: str) -> Submission:
    """The submission, or 404."""
    submission = db.session.get(Submission, submission_id)
    if submission is None or not scope.may_see(submission):  # as if it did not exist
        abort(404, description=_("There is no message with this id (it may have been deleted)."))
    return submission


def _stored_file(stored: SubmissionFile) -> Path | None:
    """The file on disk, if it is still kept there (and inside the upload folder)."""
    if not stored.path:
        return None
    root = Path(current_app.config["UPLOAD_FOLDER"]).resolve()
    path = (root / stored.path).resolve()
    return path if root in path.parents and path.is_file() else None


@bp.get("/submissions/<submission_id>")
def detail(submission_id: str) -> ResponseReturnValue:
    """One submission: its form, every field with its label as sent, its files, its mails
    and its webhook deliveries apart, each with every attempt, and its thread."""
    submission = _submission(submission_id)
    if request.method == "GET":  # a HEAD request is no one reading it
        actions.mark_opened(submission)
    return _detail_page(submission)


def _detail_page(submission: Submission, reply_form: ReplyForm | None = None,
                 note_form: NoteForm | None = None) -> str:
    """The submission's page, with the reply and note forms as posted (or empty)."""
    rows = actions.deliveries_of(submission.id)
    form = declaration_of().form(submission.form_slug or "")
    return render_template(
        "admin/detail.html", submission=submission, answers=answers_of(submission), states=STATES,
        mails=[row for row in rows if row.kind not in (MailKind.WEBHOOK, MailKind.REPLY)],
        webhooks=[row for row in rows if row.kind == MailKind.WEBHOOK],
        declares_webhooks=bool(form and form.webhooks),
        attempts={row.id: outbox.attempts_of(row.id) for row in rows},
        kept={stored.id for stored in submission.files if _stored_file(stored) is not None},
        thread=thread.thread_of(submission.id), reply_form=reply_form or ReplyForm(formdata=None),
        note_form=note_form or NoteForm(formdata=None))


@bp.post("/submissions/<submission_id>/reply")
def reply(submission_id: str) -> ResponseReturnValue:
    """Answer the visitor: the reply is queued through the outbox, the message answered."""
    submission = _submission(submission_id)
    form = ReplyForm()
    if not form.validate():
        return _detail_page(submission, reply_form=form), 422
    try:
        file = thread.checked_file(form.attachment.data)
    except uploads.UploadTooLarge as error:
        form.attachment.errors = [str(error.description)]
        return _detail_page(submission, reply_form=form), 413
    except (uploads.UploadRefused, uploads.UploadQuotaExceeded) as error:
        form.attachment.errors = [str(error)]
        status = 507 if isinstance(error, uploads.UploadQuotaExceeded) else 422
        return _detail_page(submission, reply_form=form), status
    thread.reply(submission, owner(), form.body.data or "", file)
    audit.record("reply", owner(), submission.id)  # who replied, never what
    flash(_("Your reply is queued. Its delivery is shown in the thread below."))
    return redirect(url_for("admin.detail", submission_id=submission.id, _anchor="thread"),
                    code=303)


@bp.post("/submissions/<submission_id>/notes")
def add_note(submission_id: str) -> ResponseReturnValue:
    """Keep a note on the message; it is never mailed."""
    submission = _submission(submission_id)
    form = NoteForm()
    if not form.validate():
        return _detail_page(submission, note_form=form), 422
    thread.add_note(submission, owner(), form.text.data or "")
    audit.record("note", owner(), submission.id)
    flash(_("Note added."))
    return redirect(url_for("admin.detail", submission_id=submission.id, _anchor="thread"),
                    code=303)


@bp.get("/submissions/<submission_id>/files/<int:file_id>")
def download_file(submission_id: str, file_id: int) -> ResponseReturnValue:
    """One of the submission's files as a download, never shown by the browser."""
    stored = queries.file_of(_submission(submission_id).id, file_id)
    if stored is None:
        abort(404, description=_("This message has no file with this id."))
    if stored.scan_state == INFECTED:  # an owner, after a warning; a responder never
        if not scope.is_owner():
            abort(404, description=_("This message has no file with this id."))
        return redirect(url_for("admin.infected_file", submission_id=submission_id,
                                file_id=file_id))
    return _download(stored)


def _download(stored: SubmissionFile) -> Response:
    """The file as a download, never shown by the browser; 404 once it is no longer kept."""
    path = _stored_file(stored)
    if path is None:
        abort(404, description=_("This file is no longer kept."))
    response = send_file(path, mimetype="application/octet-stream", as_attachment=True,
                         download_name=stored.name or path.name)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response


@bp.route("/submissions/<submission_id>/files/<int:file_id>/infected", methods=["GET", "POST"])
def infected_file(submission_id: str, file_id: int) -> ResponseReturnValue:
    """An infected file: a warning first; the download only by its own POST, audited."""
    stored = queries.file_of(_submission(submission_id).id, file_id)
    if stored is None or stored.scan_state != INFECTED:
        abort(404, description=_("This message has no infected file with this id."))
    if request.method == "GET":
        return render_template("admin/infected.html", stored=stored, submission_id=submission_id)
    audit.record("infected file downloaded", owner(), submission_id,
                 detail=f"file {stored.id}, {stored.scan_detail or ''}")
    return _download(stored)


@bp.post("/submissions/<submission_id>/state")
def set_state(submission_id: str) -> ResponseReturnValue:
    """Set the message's state in the inbox: new, read, answered or archived."""
    submission = _submission(submission_id)
    state = request.form.get("state", "")
    if state not in STATES:
        abort(400, description=_("Unknown state. Use one of: %(states)s.",
                                 states=", ".join(STATES)))
    before = actions.set_state(submission, state)
    audit.record("state", owner(), submission.id, detail=f"{before} to {state}")
    flash(str(STATE_NOTICES[state]))
    if state == NEW:  # its own page would mark it read again at once
        return redirect(url_for("admin.index"), code=303)
    return redirect(url_for("admin.detail", submission_id=submission.id), code=303)


@bp.post("/submissions/<submission_id>/resend")
def resend(submission_id: str) -> ResponseReturnValue:
    """Queue a new copy of the owner's mail."""
    submission = _submission(submission_id)
    actions.resend(submission)
    audit.record("resend", owner(), submission.id)
    flash(_("A new copy of the mail is queued."))
    return redirect(url_for("admin.detail", submission_id=submission.id), code=303)


@bp.post("/submissions/<submission_id>/webhooks/<int:delivery_id>/send-again")
def send_webhook_again(submission_id: str, delivery_id: int) -> ResponseReturnValue:
    """Queue a new delivery of one of its webhooks: same target, event and payload, a new
    webhook-id."""
    submission = _submission(submission_id)
    delivery = actions.webhook_delivery(submission, delivery_id)
    if delivery is None:
        abort(404, description=_("This message has no webhook delivery with this id."))
    refused = actions.why_not_again(submission, delivery)
    if refused is None:
        again = actions.send_webhook_again(delivery)
        # The URL may hold a token: the audit line names the deliveries, not the target.
        audit.record("resend webhook", owner(), submission.id,
                     detail=f"{again.event} delivery {delivery.id} sent again as {again.id} "
                            f"({again.message_id})")
    flash(refused or _("A new delivery of this webhook is queued."))
    return redirect(url_for("admin.detail", submission_id=submission.id), code=303)


@bp.post("/submissions/<submission_id>/spam")
def spam(submission_id: str) -> ResponseReturnValue:
    """File the submission as spam."""
    submission = _submission(submission_id)
    actions.mark_spam(submission)
    audit.record("spam", owner(), submission.id)
    flash(_("Marked as spam."))
    return redirect(url_for("admin.detail", submission_id=submission.id), code=303)


@bp.post("/submissions/<submission_id>/not-spam")
def not_spam(submission_id: str) -> ResponseReturnValue:
    """Release the submission from spam, sending the owner's mail if it never went."""
    submission = _submission(submission_id)
    queued = actions.mark_not_spam(submission)
    audit.record("not spam", owner(), submission.id)
    flash(_("Marked as not spam. Its mail is queued.") if queued else _("Marked as not spam."))
    return redirect(url_for("admin.detail", submission_id=submission.id), code=303)


@bp.post("/submissions/<submission_id>/delete")
def delete(submission_id: str) -> ResponseReturnValue:
    """Delete the submission, its mails, their history and its files."""
    said = actions.delete(submission_id)
    if said is None:
        abort(404, description=_("There is no message with this id (it may have been deleted)."))
    audit.record("delete", owner(), submission_id)
    flash(said)
    return redirect(url_for("admin.index"), code=303)


@bp.get("/outbox")
def outbox_page() -> ResponseReturnValue:
    """Mails and webhook deliveries by status, and the failed ones with their last reply;
    webhooks only where a form declares them or some were queued."""
    counts = health.kind_counts()
    failed_webhooks = actions.failed_webhooks()
    shows_webhooks = (any(form.webhooks for form in declaration_of().forms)
                      or any(counts[health.WEBHOOKS].values()))
    return render_template("admin/outbox.html", counts=counts, failed=actions.failed_mails(),
                           failed_webhooks=failed_webhooks, shows_webhooks=shows_webhooks,
                           scanner=health.scanner())


@bp.post("/outbox/retry")
def retry() -> ResponseReturnValue:
    """Requeue every failed mail and webhook delivery."""
    count = actions.retry_failed()
    mails, webhooks = count[health.MAILS], count[health.WEBHOOKS]
    audit.record("retry", owner(), detail=f"{mails} mail(s) requeued"
                 + (f", {webhooks} webhook(s)" if webhooks else ""))
    said = ngettext("%(num)s failed mail queued again.", "%(num)s failed mails queued again.",
                    mails)
    if webhooks:
        said += " " + ngettext("%(num)s failed webhook delivery queued again.",
                               "%(num)s failed webhook deliveries queued again.", webhooks)
    flash(said)
    return redirect(url_for("admin.outbox_page"), code=303)


def _export_form(slug: str | None) -> Form | None:
    """The declared form whose fields are the export's columns, if one is chosen."""
    return declaration_of().form(slug) if slug else None


def _export(kind: str) -> Response:
    """The filtered submissions, streamed from the database in chunks."""
    filters = _filters()
    # The search text may be an address: the audit line says only that there was one.
    audit.record("export", owner(), detail=f"{kind}, filter {filters.status}"
                 + (f", state {filters.state}" if filters.state else "")
                 + (f", form {filters.form}" if filters.form else "")
                 + (", with a search" if filters.q else ""))
    chunks = (export.csv_chunks if kind == "csv" else export.json_chunks)(
        filters.query(), _export_form(filters.form))
    mimetype = "text/csv" if kind == "csv" else "application/json"
    filename = f"submissions-{utcnow():%Y%m%d-%H%M%S}.{kind}"
    return Response(stream_with_context(chunks), mimetype=mimetype,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


@bp.get("/export.csv")
@signin.needs_recent_proof
def export_csv() -> ResponseReturnValue:
    """The archive as CSV (formula cells neutralised); with ?form=, a column per field."""
    return _export("csv")


@bp.get("/export.json")
@signin.needs_recent_proof
def export_json() -> ResponseReturnValue:
    """The archive as JSON; with ?form=, a key per field."""
    return _export("json")


@bp.route("/erase", methods=["GET", "POST"])
@signin.needs_recent_proof
def erase() -> ResponseReturnValue:
    """Remove everything held about one address, and say what was removed."""
    form = EraseForm()
    if not form.validate_on_submit():
        return render_template("admin/erase.html", form=form), 422 if form.errors else 200
    summary = privacy.erase_address(form.address.data or "").summary()
    audit.record("erase", owner(), detail=summary)  # the summary names no address
    flash(_("Erased: %(summary)s", summary=summary))
    return redirect(url_for("admin.erase"), code=303)


@bp.get("/audit")
def audit_page() -> ResponseReturnValue:
    """Who did what and when, newest first."""
    page = db.paginate(audit.newest_first(), page=max(request.args.get(
        "page", 1, type=int) or 1, 1), per_page=PER_PAGE, error_out=False)
    return render_template("admin/audit.html", page=page)
