"""Owner accounts: argon2 password hashes, Flask-Login sessions revoked on the server side."""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Sequence
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, session
from sqlalchemy import String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column

from ..database import utcnow
from ..extensions import Model, db, login_manager

USERNAME_MAX = 64
PASSWORD_MIN = 12
PASSWORD_MAX = 1024  # argon2 takes any length; this bounds the work one sign-in costs
USERNAME_PATTERN = re.compile(r"[a-z0-9._@-]{1,64}")
# What an account may do: an owner everything; a responder sees, answers, notes and
# files only the messages for its recipients (scope.py).
OWNER, RESPONDER = "owner", "responder"
ROLES = (OWNER, RESPONDER)
TOTP_SECRET_MAX = 64
SEEN_KEY = "console_seen"  # epoch seconds of the console's last answer, in its session

hasher = PasswordHasher()  # argon2id with the library's RFC 9106 defaults


@functools.cache
def _dummy_hash() -> str:
    """Checked when the name is unknown, so a wrong name costs as long as a wrong password.

    Made at the first sign-in, not at import: an argon2id hash is a tenth of a
    second, and every process (each gunicorn worker, each CLI run) imports this.
    """
    return hasher.hash("not a password of anyone")


class AccountError(ValueError):
    """A username or password that cannot be used; the message says why, in plain words."""


class User(Model):
    """A site owner who may sign in to the console."""

    __tablename__ = "admin_user"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(USERNAME_MAX), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    # Part of the id kept in the session cookie: raising it ends every session of the account.
    session_version: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_sign_in_at: Mapped[datetime | None]
    role: Mapped[str] = mapped_column(String(16), default=OWNER, server_default=OWNER)
    # A responder's recipients: their slugs, comma-separated (an owner's is empty).
    recipients: Mapped[str] = mapped_column(Text, default="", server_default="")
    # TOTP (twofactor.py): the base32 secret once confirmed, and the time step of the last
    # code accepted, so that each code signs in once.
    totp_secret: Mapped[str | None] = mapped_column(String(TOTP_SECRET_MAX))
    totp_last_step: Mapped[int | None]

    @property
    def is_owner(self) -> bool:
        """Whether the account may do everything."""
        return self.role == OWNER

    @property
    def recipient_slugs(self) -> tuple[str, ...]:
        """The recipients a responder answers for."""
        return tuple(slug for slug in self.recipients.split(",") if slug)

    # Flask-Login's user protocol, written out: its UserMixin is untyped.
    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        """The session's token: the account and its session version."""
        return f"{self.id}:{self.session_version}"


def normalise_username(name: str) -> str:
    """The stored form of a username: trimmed, lower case, checked."""
    name = name.strip().lower()
    if not USERNAME_PATTERN.fullmatch(name):
        raise AccountError("A username is 1 to 64 letters, digits, or . _ @ - characters.")
    return name


def check_password_rules(password: str) -> str:
    """The password itself, if long enough and not absurdly long."""
    if len(password) < PASSWORD_MIN:
        raise AccountError(f"A password needs at least {PASSWORD_MIN} characters.")
    if len(password) > PASSWORD_MAX:
        raise AccountError(f"A password may have at most {PASSWORD_MAX} characters.")
    return password


def checked_recipients(role: str, recipients: str, declared: Sequence[str]) -> str:
    """A role's recipients as stored: none for an owner, one or more declared slugs for a
    responder."""
    slugs = [slug.strip().lower() for slug in recipients.split(",") if slug.strip()]
    if role == OWNER:
        if slugs:
            raise AccountError("An owner sees every message: give --recipients to a "
                               "responder only.")
        return ""
    if not slugs:
        raise AccountError("A responder needs --recipients: the recipients whose messages "
                           f"it answers (declared: {', '.join(declared)}).")
    unknown = [slug for slug in slugs if slug not in declared]
    if unknown:
        raise AccountError(f"No recipient is declared as {', '.join(unknown)} "
                           f"(declared: {', '.join(declared)}).")
    return ",".join(dict.fromkeys(slugs))


def find_user(name: str) -> User | None:
    """The account of this username (any case), if there is one."""
    return db.session.scalar(select(User).where(User.username == name.strip().lower()))


def account_count() -> int:
    """How many owner accounts exist."""
    return int(db.session.scalar(select(func.count()).select_from(User)) or 0)


def create_user(name: str, password: str) -> User:
    """Add an account (the caller commits)."""
    name = normalise_username(name)
    if find_user(name) is not None:
        raise AccountError(f"There is already an account named {name}.")
    user = User(username=name, password_hash=hasher.hash(check_password_rules(password)))
    db.session.add(user)
    return user


def set_password(user: User, password: str) -> None:
    """Give the account a new password and end all its sessions (the caller commits)."""
    user.password_hash = hasher.hash(check_password_rules(password))
    revoke_sessions(user)


def revoke_sessions(user: User) -> None:
    """Every session cookie of this account, copies included, stops working (caller commits)."""
    user.session_version += 1


def authenticate(name: str, password: str) -> User | None:
    """The account if the password is right, else None, taking as long either way."""
    user = find_user(name) if USERNAME_PATTERN.fullmatch(name.strip().lower()) else None
    try:
        hasher.verify(user.password_hash if user else _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None:
        return None
    if hasher.check_needs_rehash(user.password_hash):  # the library's defaults were raised
        user.password_hash = hasher.hash(password)
    return user


def load_user(token: str) -> User | None:
    """The signed-in account, only while the session's version is the account's current one."""
    account_id, _, version = token.partition(":")
    if not (account_id.isdigit() and version.isdigit()):
        return None
    user = db.session.get(User, int(account_id))
    if user is None or user.session_version != int(version):
        return None
    return user


def mark_seen() -> None:
    """Note this answer's time in the console session, for the idle limit."""
    session[SEEN_KEY] = int(time.time())


def idle_too_long(limit_seconds: float) -> bool:
    """True when the console session's last answer is older than the limit (or unknown)."""
    seen = session.get(SEEN_KEY)
    return not isinstance(seen, int) or time.time() - seen > limit_seconds


def init_app(app: Flask) -> None:
    """Flask-Login for the console, loading accounts by their versioned token."""
    # No context processor: it would load the user (and touch the session) on public pages.
    login_manager.init_app(app, add_context_processor=False)
    login_manager.user_loader(load_user)
    # Revocation is by session version; binding to IP and browser would sign an owner
    # out whenever a phone changes network, and Flask-Login reads X-Forwarded-For unchecked.
    login_manager.session_protection = None
