"""The signed-in account's own page, the code step of sign-in, and re-authentication.

- /admin/account: who is signed in, their role and second factors; adding an
  authenticator app (its secret kept in the session until one code confirms it),
  removing it, new recovery codes (shown once, on the answer that made them).
- /admin/login/code: after the password of an account with an authenticator, a code
  from it or a recovery code; counted by the sign-in lockout like passwords.
- /admin/reauth: the password (or a code) again, when an action needs a proof less
  than five minutes old (signin.needs_recent_proof).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from flask import flash, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_babel import ngettext
from flask_login import current_user

from ..extensions import db
from ..forms import declaration_of
from . import audit, auth, lockout, signin, twofactor
from .auth import User
from .forms import CodeForm, ReauthForm
from .views import bp, safe_next

ENROL_KEY = "console_totp_enrol"  # the new secret, until a code from it confirms it




def _user() -> User:
    """The signed-in account itself (not Flask-Login's proxy)."""
    user: User = current_user._get_current_object()
    return user


def _issuer() -> str:
    """The name the authenticator app shows the account under: the site's."""
    return declaration_of().site.name or twofactor.DEFAULT_ISSUER


def _account_page(status: int = 200, confirm_form: CodeForm | None = None,
                  new_codes: list[str] | None = None) -> ResponseReturnValue:
    """The account page; with `new_codes`, the recovery codes shown this once."""
    user = _user()
    enrolment: dict[str, Any] | None = None
    secret = session.get(ENROL_KEY)
    if user.totp_secret is None and isinstance(secret, str):
        uri = twofactor.provisioning_uri(secret, user.username, _issuer())
        enrolment = {"secret": twofactor.grouped(secret),
                     "qr": twofactor.qr_svg(uri, _("QR code for your authenticator app"))}
    totp_on = twofactor.has_second_factor(user)
    return render_template(
        "admin/account.html", user=user, totp_on=totp_on,
        codes_left=twofactor.recovery_codes_left(user) if totp_on else 0,
        enrolment=enrolment, must_enrol=twofactor.must_enrol(user), new_codes=new_codes,
        confirm_form=confirm_form or CodeForm(formdata=None)), status


def account_action(view: Callable[[], ResponseReturnValue]) -> Callable[[], ResponseReturnValue]:
    """A change to the account: POST only, after a recent proof. A GET (where re-authenticating
    before a POST comes back to) shows the account page, where the button is."""
    checked = signin.needs_recent_proof(view)

    @functools.wraps(view)
    def action() -> ResponseReturnValue:
        if request.method != "POST":
            return redirect(url_for("admin.account"))
        return checked()
    return action


@bp.get("/account")
def account() -> ResponseReturnValue:
    """The signed-in account: name, role, authenticator, recovery codes left, passkeys."""
    return _account_page()


@bp.route("/account/totp", methods=["GET", "POST"])
@account_action
def totp_start() -> ResponseReturnValue:
    """Begin adding an authenticator app: a new secret, kept in the session until confirmed."""
    if twofactor.has_second_factor(_user()):
        flash(_("An authenticator app is already on. Remove it first to add another."))
        return redirect(url_for("admin.account"), code=303)
    session[ENROL_KEY] = twofactor.new_secret()
    return redirect(url_for("admin.account", _anchor="authenticator"), code=303)


@bp.route("/account/totp/confirm", methods=["GET", "POST"])
@account_action
def totp_confirm() -> ResponseReturnValue:
    """One right code from the new authenticator turns it on and makes recovery codes."""
    user = _user()
    secret = session.get(ENROL_KEY)
    if twofactor.has_second_factor(user) or not isinstance(secret, str):
        flash(_("Start again: choose “Add an authenticator”."))
        return redirect(url_for("admin.account"), code=303)
    form = CodeForm()
    step = (twofactor.matching_step(secret, form.code.data or "", None)
            if form.validate() else None)
    if step is None:
        form.code.errors = [_("This code is not right. Type the 6 digits your app shows now.")]
        audit.record("2fa not added", user.username, detail="wrong confirmation code")
        return _account_page(422, confirm_form=form)
    codes = twofactor.enable_totp(user, secret, step)
    session.pop(ENROL_KEY, None)
    audit.record("2fa added", user.username,
                 detail=f"authenticator app, {len(codes)} recovery codes")  # commits
    return _account_page(new_codes=codes)


@bp.route("/account/totp/remove", methods=["GET", "POST"])
@account_action
def totp_remove() -> ResponseReturnValue:
    """Turn the authenticator app off; its recovery codes stop working."""
    user = _user()
    if not twofactor.has_second_factor(user):
        flash(_("No authenticator app is on."))
    elif twofactor.totp_is_required(user):
        flash(_("This site asks every account for a second factor: add a passkey before "
                "removing the authenticator app."))
    else:
        twofactor.remove_totp(user)
        audit.record("2fa removed", user.username, detail="authenticator app")  # commits
        flash(_("The authenticator app is removed: signing in no longer asks for its code."))
    return redirect(url_for("admin.account"), code=303)


@bp.route("/account/recovery-codes", methods=["GET", "POST"])
@account_action
def recovery_codes() -> ResponseReturnValue:
    """New recovery codes, shown this once; the old ones stop working."""
    user = _user()
    if not twofactor.has_second_factor(user):
        flash(_("Recovery codes come with an authenticator app: add one first."))
        return redirect(url_for("admin.account"), code=303)
    codes = twofactor.new_recovery_codes(user)
    audit.record("recovery codes renewed", user.username,
                 detail=f"{len(codes)} recovery codes")  # commits
    return _account_page(new_codes=codes)


def _locked(template: str, retry_after: int, **context: Any) -> ResponseReturnValue:
    """The page with the lockout's words, 429 and when to try again."""
    return (render_template(template, locked=True, **context), 429,
            {"Retry-After": str(retry_after)})


def _code_page(user: User, form: CodeForm, wrong: bool = False) -> str:
    """The code step: a code field for an account with an authenticator; for one with
    passkeys alone, the passkey button."""
    return render_template("admin/login_code.html", form=form, wrong=wrong,
                           passkey_only=user.totp_secret is None)


@bp.route("/login/code", methods=["GET", "POST"])
def login_code() -> ResponseReturnValue:
    """The code step of sign-in: a code from the authenticator app, or a recovery code."""
    if current_user.is_authenticated:
        return redirect(url_for("admin.index"))
    user = signin.pending_user()
    if user is None or not twofactor.has_second_factor(user):
        if session.pop(signin.PENDING_KEY, None) is not None:
            flash(_("Signing in took too long. Give your password again."))
        return redirect(url_for("admin.login", next=request.args.get("next")), code=303)
    form = CodeForm()
    if request.method == "GET":
        return _code_page(user, form)
    attempt = lockout.begin(user.username)  # counted before the code is checked
    if attempt.retry_after is not None:
        return _locked("admin/login_code.html", attempt.retry_after, form=form,
                       passkey_only=user.totp_secret is None)
    answer = (form.code.data or "") if form.validate() else ""
    method = None
    if answer and twofactor.looks_like_totp(answer):
        method = "password+totp" if twofactor.use_totp(user, answer) else None
    elif answer and twofactor.use_recovery_code(user, answer):
        method = "password+recovery code"
    db.session.commit()  # a code used up, before the lockout's store (maybe this database)
    if method is None:
        lockout.failed(attempt)
        audit.record("second factor refused", user.username)  # commits
        return _code_page(user, form, wrong=True), 422
    lockout.succeeded(attempt)
    answer_page = signin.complete(user, method, safe_next(request.args.get("next")))  # commits
    if method == "password+recovery code":
        left = twofactor.recovery_codes_left(user)
        flash(ngettext("You signed in with a recovery code; %(num)s is left. You can make new "
                       "ones on your account page.",
                       "You signed in with a recovery code; %(num)s are left. You can make new "
                       "ones on your account page.", left))
    return answer_page


@bp.route("/reauth", methods=["GET", "POST"])
def reauth() -> ResponseReturnValue:
    """Prove who you are again (password, or a code), then go on to what you were doing."""
    user = _user()
    totp_on = twofactor.has_second_factor(user)
    form = ReauthForm()
    if request.method == "GET":
        return render_template("admin/reauth.html", form=form, totp_on=totp_on)
    attempt = lockout.begin(user.username)
    if attempt.retry_after is not None:
        return _locked("admin/reauth.html", attempt.retry_after, form=form, totp_on=totp_on)
    method = None
    if form.validate():
        code, password = form.code.data or "", form.password.data or ""
        if code and totp_on and twofactor.use_totp(user, code):
            method = "totp"
        elif password and getattr(auth.authenticate(user.username, password), "id",
                                  None) == user.id:
            method = "password"
    db.session.commit()  # a code used up, before the lockout's store (maybe this database)
    if method is None:
        lockout.failed(attempt)
        audit.record("re-authentication refused", user.username)  # commits
        return render_template("admin/reauth.html", form=form, totp_on=totp_on,
                               wrong=True), 422
    lockout.succeeded(attempt)
    signin.mark_proved()
    audit.record("re-authenticated", user.username, detail=method)  # commits
    return redirect(safe_next(request.args.get("next")), code=303)
