"""TOTP second factor and recovery codes: what is stored, and which code signs in once.

An account with a TOTP secret gives a code after its password (the code step in
account.py); its recovery codes stand in for the authenticator, each once. Codes are
accepted within one time step either side of now, and only for a step later than the
last one accepted, so a code seen over a shoulder or replayed does not sign in again.
A passkey signs in alone (passkeys.py); an account with passkeys but no authenticator
is asked for one of its passkeys after its password, so the password alone never opens
an account that has a second factor.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time

import pyotp
import segno
from argon2.exceptions import InvalidHashError, VerificationError
from flask import current_app
from markupsafe import Markup
from sqlalchemy import delete, exists, func, or_, select, update

from ..database import utcnow
from ..extensions import db
from .auth import User, hasher, revoke_sessions
from .factors import Passkey, RecoveryCode

# The pages an account that must add a second factor may still open.
ENROL_ENDPOINTS = frozenset({
    "admin.account", "admin.totp_start", "admin.totp_confirm", "admin.totp_remove",
    "admin.recovery_codes", "admin.logout", "admin.reauth",
    "admin.passkey_register_options", "admin.passkey_register", "static",
})
VALID_WINDOW = 1  # steps either side of now: a clock 30 seconds off still signs in
CODE_PATTERN = re.compile(r"[0-9]{6}")
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # base32: no 0, 1 or 8 to confuse
MISREAD = str.maketrans("018", "OIB")  # so a 0 typed for an O still counts
RECOVERY_PATTERN = re.compile(f"[{RECOVERY_ALPHABET}]{{8}}")
CODE_MAX = 64  # what a code field takes; a longer answer is simply wrong
DEFAULT_ISSUER = "Contact"


def has_second_factor(user: User) -> bool:
    """Whether the account's password alone does not sign it in: it has an authenticator
    (the code step asks for a code) or passkeys (the code step asks for one of them)."""
    return user.totp_secret is not None or has_passkeys(user)


def has_passkeys(user: User) -> bool:
    """Whether the account has registered a passkey."""
    return bool(db.session.scalar(select(exists().where(Passkey.user_id == user.id))))


def must_enrol(user: User) -> bool:
    """Whether CONTACT_REQUIRE_2FA sends this account to add a second factor first."""
    if not current_app.config.get("CONTACT_REQUIRE_2FA"):
        return False
    return user.totp_secret is None and not has_passkeys(user)


def totp_is_required(user: User) -> bool:
    """Whether CONTACT_REQUIRE_2FA keeps the authenticator app on: without a passkey, it is
    the account's only second factor."""
    return bool(current_app.config.get("CONTACT_REQUIRE_2FA")) and not has_passkeys(user)


def new_secret() -> str:
    """A fresh random base32 TOTP secret (160 bits)."""
    return pyotp.random_base32()


def provisioning_uri(secret: str, username: str, issuer: str | None) -> str:
    """The otpauth:// address an authenticator app reads from the QR code."""
    return pyotp.TOTP(secret).provisioning_uri(name=username,
                                               issuer_name=issuer or DEFAULT_ISSUER)


def qr_svg(uri: str, title: str) -> Markup:
    """The address as an inline SVG QR code: no style attribute, no script, no data: URI,
    so the console's Content-Security-Policy stays as it is."""
    return Markup(segno.make(uri, error="m").svg_inline(scale=5, border=4, dark="#000",
                                                       light="#fff", title=title))


def grouped(secret: str) -> str:
    """The secret in groups of four, as it is easier to type."""
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))


def _squeezed(text: str) -> str:
    """What was typed, without spaces and hyphens, upper case."""
    return re.sub(r"[\s-]+", "", text).upper()


def looks_like_totp(text: str) -> bool:
    """Whether the answer is six digits (spaces allowed), not a recovery code."""
    return CODE_PATTERN.fullmatch(_squeezed(text)) is not None


def matching_step(secret: str, code: str, after: int | None,
                  now: float | None = None) -> int | None:
    """The time step within VALID_WINDOW of now whose code this is, if it is later than
    `after` (the last step accepted); None otherwise."""
    code = _squeezed(code)
    if not CODE_PATTERN.fullmatch(code):
        return None
    totp = pyotp.TOTP(secret)
    current = totp.timecode(time.time() if now is None else now)
    for step in range(current - VALID_WINDOW, current + VALID_WINDOW + 1):
        if (after is None or step > after) and hmac.compare_digest(
                totp.generate_otp(step), code):
            return step
    return None


def use_totp(user: User, code: str) -> bool:
    """Accept the code once: its step becomes the account's last (the caller commits).

    The step is claimed with one conditional UPDATE, so two requests racing with the
    same code cannot both pass.
    """
    secret = user.totp_secret
    if secret is None:
        return False
    step = matching_step(secret, code, user.totp_last_step)
    if step is None:
        return False
    claimed = db.session.execute(
        update(User)
        .where(User.id == user.id, User.totp_secret == secret,
               or_(User.totp_last_step.is_(None), User.totp_last_step < step))
        .values(totp_last_step=step))
    return int(claimed.rowcount) == 1  # type: ignore[attr-defined]


def enable_totp(user: User, secret: str, step: int) -> list[str]:
    """Store the confirmed secret (its confirming code used up) and make new recovery
    codes; the codes, shown once (the caller commits)."""
    user.totp_secret = secret
    user.totp_last_step = step
    return new_recovery_codes(user)


def remove_totp(user: User) -> None:
    """Turn the authenticator off; its recovery codes go with it (the caller commits)."""
    user.totp_secret = None
    user.totp_last_step = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))


def reset(user: User) -> None:
    """Remove every second factor of the account and end its sessions (the caller commits)."""
    remove_totp(user)
    db.session.execute(delete(Passkey).where(Passkey.user_id == user.id))
    revoke_sessions(user)


def _recovery_code() -> str:
    """Eight random base32 characters, shown as two groups of four (40 bits)."""
    code = "".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(8))
    return f"{code[:4]}-{code[4:]}"


def new_recovery_codes(user: User) -> list[str]:
    """Replace the account's recovery codes by new ones, stored as argon2 hashes; the
    codes themselves, to be shown once (the caller commits)."""
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=hasher.hash(_squeezed(code)))
                       for code in codes)
    return codes


def recovery_codes_left(user: User) -> int:
    """How many of the account's recovery codes are still unused."""
    return int(db.session.scalar(
        select(func.count()).select_from(RecoveryCode)
        .where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))) or 0)


def use_recovery_code(user: User, text: str) -> bool:
    """Accept an unused recovery code once, marking it used (the caller commits)."""
    code = _squeezed(text).translate(MISREAD)
    if user.totp_secret is None or not RECOVERY_PATTERN.fullmatch(code):
        return False
    unused = db.session.scalars(select(RecoveryCode).where(
        RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)).order_by(
        RecoveryCode.id)).all()
    for row in unused:
        try:
            hasher.verify(row.code_hash, code)
        except (VerificationError, InvalidHashError):
            continue
        claimed = db.session.execute(
            update(RecoveryCode).where(RecoveryCode.id == row.id, RecoveryCode.used_at.is_(None))
            .values(used_at=utcnow()))
        return int(claimed.rowcount) == 1  # type: ignore[attr-defined]
    return False
