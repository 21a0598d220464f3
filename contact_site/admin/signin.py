"""Finishing a sign-in, whichever proof it took, and how recent the last proof is.

A password alone signs in an account without a second factor; with one, the
password leads to the code step (twofactor.py), and a passkey signs in alone
(passkeys.py). Each path ends in `complete`. Erasure, export and account changes
ask for a proof again (`needs_recent_proof`) once the last one is over
PROOF_SECONDS old.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import TypeVar

from flask import redirect, request, session, url_for
from flask.typing import ResponseReturnValue
from flask_login import current_user, login_user

from ..database import utcnow
from . import audit
from .auth import User, load_user, mark_seen

PROOF_KEY = "console_proved"  # epoch seconds of the session's last password, code or passkey
PENDING_KEY = "console_pending"  # (account id, session version, epoch) after the password
PROOF_SECONDS = 300
PENDING_SECONDS = 300  # the code step must follow the password within this

View = TypeVar("View", bound=Callable[..., ResponseReturnValue])


def complete(user: User, method: str, target: str) -> ResponseReturnValue:
    """Sign the account in (a fresh session: nothing from before is carried over), record
    how, and go to `target` (a checked console path)."""
    session.clear()
    login_user(user)
    mark_seen()
    mark_proved()
    user.last_sign_in_at = utcnow()
    audit.record("sign-in", user.username, detail=method)
    return redirect(target, code=303)


def mark_proved() -> None:
    """The signed-in user has just proved who they are (password, code or passkey)."""
    session[PROOF_KEY] = int(time.time())


def proved_recently() -> bool:
    """Whether the session's last proof is at most PROOF_SECONDS old."""
    proved = session.get(PROOF_KEY)
    return isinstance(proved, int) and time.time() - proved <= PROOF_SECONDS


def remember_pending(user: User) -> None:
    """The password was right; the second factor is still to come."""
    session.clear()
    session[PENDING_KEY] = [user.id, user.session_version, int(time.time())]


def pending_user() -> User | None:
    """The account whose password was given in this session within PENDING_SECONDS."""
    pending = session.get(PENDING_KEY)
    if not (isinstance(pending, list) and len(pending) == 3
            and all(isinstance(part, int) for part in pending)):
        return None
    account, version, at = pending
    if time.time() - at > PENDING_SECONDS:
        return None
    return load_user(f"{account}:{version}")


def needs_recent_proof(view: View) -> View:
    """Send the user to prove who they are again first, when the last proof is too old."""
    @functools.wraps(view)
    def checked(*args: object, **kwargs: object) -> ResponseReturnValue:
        if current_user.is_authenticated and not proved_recently():
            back = request.full_path.rstrip("?") if request.method == "GET" else request.path
            return redirect(url_for("admin.reauth", next=back))
        return view(*args, **kwargs)
    return checked  # type: ignore[return-value]
