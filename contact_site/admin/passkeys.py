"""Passkeys: adding them on the account page, signing in with one alone, and proving
who one is again with one.

The browser's side is static/passkeys.js: it asks for the options, hands them to
`navigator.credentials`, and posts the credential back as JSON, with the console's CSRF
token in the X-CSRFToken header. Each ceremony's challenge is kept in the console session
for one use and CHALLENGE_SECONDS. The relying party is the host of CONTACT_BASE_URL (the
request's host without it); a passkey made for one host does not sign in on another.

A sign-in with a passkey is counted by lockout.py like a password's, under the
credential's account (or PASSKEY_TRY_NAME when the credential is unknown), and refused
when the authenticator's counter has not risen: a counter that goes back is the mark of
a copied credential.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NoReturn, TypeVar
from urllib.parse import urlsplit

from flask import (
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select
from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    options_to_json,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import base64url_to_bytes, bytes_to_base64url
from webauthn.helpers.structs import (
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)
from werkzeug.wrappers import Response as BaseResponse

from ..database import utcnow
from ..extensions import db
from ..forms import declaration_of
from . import audit, lockout, signin
from .auth import User
from .factors import PASSKEY_NAME_MAX, Passkey
from .views import bp, safe_next

__all__ = ["bp", "passkeys_of"]

CHALLENGE_KEY = "console_passkey"  # [purpose, base64url challenge, epoch seconds]
CHALLENGE_SECONDS = 300
TIMEOUT_MS = 120_000  # how long the browser waits for the authenticator
PASSKEY_TRY_NAME = "(passkey)"  # what lockout counts a try with an unknown credential under
CREDENTIAL_ID_MAX = 1400  # as stored (factors.Passkey.credential_id)
REGISTER, SIGN_IN, REAUTH = "register", "sign-in", "reauth"
KNOWN_TRANSPORTS = frozenset(transport.value for transport in AuthenticatorTransport)

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


class Refused(Exception):
    """A ceremony that cannot go on: answered as JSON {"error": message} with `status`;
    `recorded` when the audit log has a line for it already."""

    def __init__(self, message: str, status: int = 400, recorded: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.recorded = recorded


def refuse(message: str, status: int = 400, recorded: bool = False) -> NoReturn:
    """Stop the request with a JSON refusal."""
    raise Refused(message, status, recorded)


def response_part(body: dict[str, Any]) -> dict[str, Any]:
    """The credential's `response` object (empty when it is not one)."""
    part = body["credential"].get("response")
    return part if isinstance(part, dict) else {}


def refused_answer(refusal: Refused) -> ResponseReturnValue:
    """The refusal as the script reads it."""
    return jsonify({"error": refusal.message}), refusal.status


def passkeys_of(user: User) -> Sequence[Passkey]:
    """The account's passkeys, oldest first."""
    return db.session.scalars(select(Passkey).where(Passkey.user_id == user.id)
                              .order_by(Passkey.created_at, Passkey.id)).all()


@bp.context_processor
def passkey_context() -> dict[str, Any]:
    """Templates list the signed-in account's passkeys with `passkeys_of(current_user)`."""
    return {"passkeys_of": passkeys_of, "passkey_name_max": PASSKEY_NAME_MAX}


def relying_party() -> tuple[str, str]:
    """The relying party's id (a host name) and the origin the browser must report."""
    base = current_app.config.get("CONTACT_BASE_URL") or request.host_url
    parts = urlsplit(base)
    host = (parts.hostname or "").lower()
    default = {"http": 80, "https": 443}.get(parts.scheme)
    port = f":{parts.port}" if parts.port not in (None, default) else ""  # as browsers write it
    return host, f"{parts.scheme}://{host}{port}"


def relying_party_name() -> str:
    """Shown by some authenticators beside the passkey: the site's name, else its host."""
    return declaration_of().site.name or relying_party()[0]


def user_handle(user: User) -> bytes:
    """The account's WebAuthn user handle: its id, never its name."""
    return str(user.id).encode()


def keep_challenge(purpose: str, challenge: bytes) -> None:
    """Remember the ceremony's challenge in the console session, for one answer."""
    session[CHALLENGE_KEY] = [purpose, bytes_to_base64url(challenge), int(time.time())]


def take_challenge(purpose: str) -> bytes:
    """The challenge given for `purpose` in this session (used up), or a refusal."""
    kept = session.pop(CHALLENGE_KEY, None)
    if not (isinstance(kept, list) and len(kept) == 3 and kept[0] == purpose
            and isinstance(kept[1], str) and isinstance(kept[2], int)
            and time.time() - kept[2] <= CHALLENGE_SECONDS):
        refuse(_("The passkey request has expired. Try again."))
    return base64url_to_bytes(kept[1])


def json_body() -> dict[str, Any]:
    """The request's JSON object with its `credential` object, or a refusal."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("credential"), dict):
        refuse(_("The browser sent no passkey."))
    return body


def descriptors(passkeys: Sequence[Passkey]) -> list[PublicKeyCredentialDescriptor]:
    """The passkeys as the browser is told of them (to exclude or to allow)."""
    return [PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(passkey.credential_id),
        transports=[AuthenticatorTransport(t) for t in passkey.transports.split(",")
                    if t in KNOWN_TRANSPORTS] or None) for passkey in passkeys]


def options_answer(options: Any) -> Response:
    """The options as JSON, as the library writes them (binary parts in base64url)."""
    return Response(options_to_json(options), mimetype="application/json")


def reauth_url() -> str:
    """Where an account change too long after the last proof sends the owner first."""
    return url_for("admin.reauth", next=url_for("admin.account"))


def json_recent_proof(view: View) -> View:
    """signin.needs_recent_proof for the script's requests: 401 {"reauth": url}, which the
    script follows, instead of a redirect a fetch would follow on its own."""
    @functools.wraps(view)
    def checked(*args: object, **kwargs: object) -> ResponseReturnValue:
        if not signin.proved_recently():
            return jsonify({"reauth": reauth_url()}), 401
        try:
            return view(*args, **kwargs)
        except Refused as refusal:
            return refused_answer(refusal)
    return checked  # type: ignore[return-value]


def answers_refusals(view: View) -> View:
    """Turn a Refused raised by the view into its JSON answer."""
    @functools.wraps(view)
    def answered(*args: object, **kwargs: object) -> ResponseReturnValue:
        try:
            return view(*args, **kwargs)
        except Refused as refusal:
            return refused_answer(refusal)
    return answered  # type: ignore[return-value]


# Adding a passkey (the account page).

@bp.post("/account/passkeys/options")
@json_recent_proof
def passkey_register_options() -> ResponseReturnValue:
    """Options for making a discoverable passkey for the signed-in account (one it has
    already is excluded)."""
    user: User = current_user._get_current_object()
    options = generate_registration_options(
        rp_id=relying_party()[0], rp_name=relying_party_name(), user_name=user.username,
        user_id=user_handle(user), timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.REQUIRED,
            user_verification=UserVerificationRequirement.PREFERRED),
        exclude_credentials=descriptors(passkeys_of(user)))
    keep_challenge(REGISTER, options.challenge)
    return options_answer(options)


def passkey_name(value: Any) -> str:
    """The name given to a passkey, trimmed and checked, or a refusal."""
    name = value.strip() if isinstance(value, str) else ""
    if not name:
        refuse(_("Give the passkey a name, such as the device it is on."))
    if len(name) > PASSKEY_NAME_MAX:
        refuse(_("A passkey's name may have at most %(max)s characters.",
                 max=PASSKEY_NAME_MAX))
    return name


@bp.post("/account/passkeys")
@json_recent_proof
def passkey_register() -> ResponseReturnValue:
    """Check the new credential against the challenge given and store it under its name."""
    user: User = current_user._get_current_object()
    body = json_body()
    name = passkey_name(body.get("name"))
    challenge = take_challenge(REGISTER)
    rp_id, origin = relying_party()
    try:
        verified = verify_registration_response(
            credential=body["credential"], expected_challenge=challenge,
            expected_rp_id=rp_id, expected_origin=origin)
    except Exception:  # noqa: BLE001 -- whatever the parsers make of a bad body is a refusal
        refuse(_("The passkey could not be checked. Try again."))
    credential_id = bytes_to_base64url(verified.credential_id)
    if len(credential_id) > CREDENTIAL_ID_MAX:
        refuse(_("The passkey could not be checked. Try again."))
    if db.session.scalar(select(Passkey.id).where(Passkey.credential_id == credential_id)):
        refuse(_("This passkey is added already."), 409)
    transports = response_part(body).get("transports")
    kept = [t for t in transports if t in KNOWN_TRANSPORTS] if isinstance(transports,
                                                                           list) else []
    db.session.add(Passkey(user_id=user.id, credential_id=credential_id,
                           public_key=verified.credential_public_key,
                           sign_count=verified.sign_count, name=name,
                           transports=",".join(kept)[:200], created_at=utcnow()))
    db.session.commit()
    audit.record("passkey added", user.username, detail=name)
    flash(_("The passkey “%(name)s” is added: you can sign in with it.", name=name))
    return jsonify({"redirect": url_for("admin.account")})


def own_passkey(passkey_id: int) -> Passkey:
    """The signed-in account's passkey of this id, or 404."""
    passkey = db.session.get(Passkey, passkey_id)
    if passkey is None or passkey.user_id != current_user.id:
        abort(404, description=_("There is no passkey with this id (it may have been "
                                 "removed)."))
    return passkey


@bp.post("/account/passkeys/<int:passkey_id>/name")
def passkey_rename(passkey_id: int) -> ResponseReturnValue:
    """Give a passkey another name (the plain form on the account page)."""
    passkey = own_passkey(passkey_id)
    name = request.form.get("name", "").strip()
    if not name or len(name) > PASSKEY_NAME_MAX:
        flash(_("A passkey's name is 1 to %(max)s characters; it was not changed.",
                max=PASSKEY_NAME_MAX))
        return redirect(url_for("admin.account"), code=303)
    before, passkey.name = passkey.name, name
    db.session.commit()
    audit.record("passkey renamed", current_user.username, detail=f"{before} to {name}")
    flash(_("The passkey is now named “%(name)s”.", name=name))
    return redirect(url_for("admin.account"), code=303)


@bp.route("/account/passkeys/<int:passkey_id>/delete", methods=["GET", "POST"])
@signin.needs_recent_proof
def passkey_delete(passkey_id: int) -> ResponseReturnValue:
    """Remove a passkey: it no longer signs in (the plain form on the account page)."""
    if request.method == "GET":  # back here after a proof: the account page shows the form
        return redirect(url_for("admin.account"))
    passkey = own_passkey(passkey_id)
    name = passkey.name
    db.session.delete(passkey)
    db.session.commit()
    audit.record("passkey removed", current_user.username, detail=name)
    flash(_("The passkey “%(name)s” is removed: it no longer signs in.", name=name))
    return redirect(url_for("admin.account"), code=303)


# Signing in with a passkey, and proving who one is again.

def assertion_options(purpose: str, allowed: Sequence[Passkey]) -> Response:
    """Options for a passkey assertion (any discoverable passkey when `allowed` is empty)."""
    options = generate_authentication_options(
        rp_id=relying_party()[0], timeout=TIMEOUT_MS, allow_credentials=descriptors(allowed),
        user_verification=UserVerificationRequirement.PREFERRED)
    keep_challenge(purpose, options.challenge)
    return options_answer(options)


def credential_id_of(body: dict[str, Any]) -> str | None:
    """The id the credential claims, if it is one that could be stored."""
    claimed = body["credential"].get("id")
    if isinstance(claimed, str) and 0 < len(claimed) <= CREDENTIAL_ID_MAX:
        return claimed
    return None


def stored_passkey(body: dict[str, Any]) -> Passkey | None:
    """The stored passkey the posted credential names."""
    claimed = credential_id_of(body)
    if claimed is None:
        return None
    return db.session.scalar(select(Passkey).where(Passkey.credential_id == claimed))


def check_assertion(body: dict[str, Any], passkey: Passkey, purpose: str) -> None:
    """Check the signature over this session's challenge and that the counter rose; note
    the new counter and the time (the caller commits). A refusal otherwise."""
    challenge = take_challenge(purpose)
    rp_id, origin = relying_party()
    handle = response_part(body).get("userHandle")
    owner = db.session.get(User, passkey.user_id)
    if handle and (owner is None or handle != bytes_to_base64url(user_handle(owner))):
        refuse(_("This passkey did not sign in."))
    try:
        # The counter is checked below, after the signature: a refusal for it is recorded.
        verified = verify_authentication_response(
            credential=body["credential"], expected_challenge=challenge,
            expected_rp_id=rp_id, expected_origin=origin,
            credential_public_key=passkey.public_key, credential_current_sign_count=0)
    except Exception:  # noqa: BLE001 -- whatever the parsers make of a bad body is a refusal
        refuse(_("This passkey did not sign in."))
    counter = verified.new_sign_count
    if (counter or passkey.sign_count) and counter <= passkey.sign_count:
        audit.record("passkey refused: counter", owner.username if owner else None,
                     detail=f"{passkey.name}: {counter} after {passkey.sign_count}")
        refuse(_("This passkey's counter went back: it may have been copied. Sign in "
                 "another way and remove it."), 403, recorded=True)
    passkey.sign_count = counter
    passkey.last_used_at = utcnow()


@bp.post("/login/passkey/options")
def passkey_options() -> ResponseReturnValue:
    """Options for signing in with any passkey of this site (the browser offers them)."""
    return assertion_options(SIGN_IN, ())


@bp.post("/login/passkey")
def passkey_login() -> ResponseReturnValue:
    """Sign in with the passkey alone; {"redirect": url} for the script to follow."""
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or not isinstance(body.get("credential"), dict):
        body = {"credential": {}}
    passkey = stored_passkey(body)
    user = db.session.get(User, passkey.user_id) if passkey else None
    attempt = lockout.begin(user.username if user else PASSKEY_TRY_NAME)
    if attempt.retry_after is not None:
        return locked_answer(attempt.retry_after)
    try:
        if passkey is None or user is None:
            refuse(_("This passkey is not one of this site's: sign in with your password."))
        check_assertion(body, passkey, SIGN_IN)
    except Refused as refusal:
        session.pop(CHALLENGE_KEY, None)
        lockout.failed(attempt)
        if not refusal.recorded:
            audit.record("sign-in refused", user.username if user else None, detail="passkey")
        return refused_answer(refusal)
    lockout.succeeded(attempt)
    target = safe_next(body.get("next") if isinstance(body.get("next"), str) else None)
    # complete() writes the signed-in session; this answer carries its cookie.
    done = signin.complete(user, "passkey", target)
    location = done.location if isinstance(done, BaseResponse) else target
    return jsonify({"redirect": location})


def locked_answer(retry_after: int) -> ResponseReturnValue:
    """429 in JSON, with when to try again: the lockout's answer to a passkey's try."""
    answer = jsonify({"error": _("Too many failed sign-ins. Wait a minute, then try again.")})
    return answer, 429, {"Retry-After": str(retry_after)}


@bp.post("/reauth/passkey/options")
def passkey_reauth_options() -> ResponseReturnValue:
    """Options for proving who one is again with one of the account's passkeys."""
    return assertion_options(REAUTH, passkeys_of(current_user._get_current_object()))


@bp.post("/reauth/passkey")
@answers_refusals
def passkey_reauth() -> ResponseReturnValue:
    """A passkey of the signed-in account proves who they are; {"redirect": ?next=}."""
    user: User = current_user._get_current_object()
    body = json_body()
    passkey = stored_passkey(body)
    attempt = lockout.begin(user.username)
    if attempt.retry_after is not None:
        return locked_answer(attempt.retry_after)
    try:
        if passkey is None or passkey.user_id != user.id:
            refuse(_("This passkey is not one of this account's."))
        check_assertion(body, passkey, REAUTH)
    except Refused as refusal:
        session.pop(CHALLENGE_KEY, None)
        lockout.failed(attempt)
        if not refusal.recorded:
            audit.record("re-authentication refused", user.username, detail="passkey")
        raise
    lockout.succeeded(attempt)
    signin.mark_proved()
    audit.record("re-authenticated", user.username, detail="passkey")  # commits the counter
    target = body.get("next") if isinstance(body.get("next"), str) else None
    return jsonify({"redirect": safe_next(target or request.args.get("next"))})
