"""What the spam defence remembers between requests: used proofs and message fingerprints."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model

DIGEST_LENGTH = 64  # a SHA-256 in hex


class UsedChallenge(Model):
    """An ALTCHA challenge whose solution was accepted once; kept until the challenge expires."""

    __tablename__ = "altcha_used"

    # The primary key is the replay check: a second INSERT of the same challenge fails,
    # in whichever process of the deployment it is tried.
    challenge: Mapped[str] = mapped_column(String(DIGEST_LENGTH), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)


class MessageFingerprint(Model):
    """A hash of one normalised message and the network it came from; never the text."""

    __tablename__ = "message_fingerprint"

    id: Mapped[int] = mapped_column(primary_key=True)
    # Not unique: two posts of one message at the same moment both add a row, and
    # neither insert can fail the submission it is committed with.
    digest: Mapped[str] = mapped_column(String(DIGEST_LENGTH), index=True)
    seen_at: Mapped[datetime] = mapped_column(index=True)
