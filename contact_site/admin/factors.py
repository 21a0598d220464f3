"""An account's second factors as stored: recovery codes (hashed) and passkeys.

The TOTP secret itself is a column of the account (auth.User); what signs in with
each factor is twofactor.py's and passkeys.py's.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from ..database import utcnow
from ..extensions import Model

PASSKEY_NAME_MAX = 100


class RecoveryCode(Model):
    """One single-use recovery code of an account, as an argon2 hash."""

    __tablename__ = "recovery_code"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("admin_user.id", ondelete="CASCADE", name="fk_recovery_code_user_id"),
        index=True)
    code_hash: Mapped[str] = mapped_column(String(255))
    used_at: Mapped[datetime | None]


class Passkey(Model):
    """A WebAuthn credential registered to an account, with its public key and counter."""

    __tablename__ = "passkey"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("admin_user.id", ondelete="CASCADE", name="fk_passkey_user_id"), index=True)
    credential_id: Mapped[str] = mapped_column(String(1400), unique=True)  # base64url
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    sign_count: Mapped[int] = mapped_column(default=0)
    name: Mapped[str] = mapped_column(String(PASSKEY_NAME_MAX))
    transports: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None]
