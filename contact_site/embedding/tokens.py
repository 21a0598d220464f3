"""The embedded form's token: what a cookie-less page carries instead of the CSRF cookie.

`GET /f/<slug>/token` signs the form's slug, a fresh nonce and the time it was
served (itsdangerous, under the site's keys). The nonce becomes the submission's
key, so a token is used once: a second POST with it stores nothing new and is
answered like the first. The time it carries is the time trap's.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from itsdangerous import BadSignature, URLSafeTimedSerializer

from ..keys import oldest_first
from ..submissions.content import new_submission_key

SALT = "contact_site.embedding.token"
FIELD = "_token"
# Long enough for a visitor who leaves a tab open over a weekend; a token is used once.
MAX_AGE = timedelta(days=3)


@dataclass(frozen=True)
class Token:
    """A verified token: its form, its nonce (the submission key) and when it was served."""

    slug: str
    nonce: str
    served_at: datetime


def _serializer() -> URLSafeTimedSerializer:
    # Signed with the current key, accepted under SECRET_KEY_FALLBACKS as well.
    return URLSafeTimedSerializer(oldest_first(), salt=SALT)


def issue(slug: str) -> str:
    """A new token for the form `slug`."""
    return _serializer().dumps([slug, new_submission_key()])


def verify(value: str | None, slug: str) -> Token | None:
    """The token if it is ours, for this form and not too old; None otherwise."""
    if not value or len(value) > 512:
        return None
    try:
        data, signed_at = _serializer().loads(value, max_age=int(MAX_AGE.total_seconds()),
                                              return_timestamp=True)
    except BadSignature:  # also expired (SignatureExpired) and malformed
        return None
    if not (isinstance(data, list) and len(data) == 2 and data[0] == slug
            and isinstance(data[1], str)):
        return None
    return Token(slug, data[1], signed_at.astimezone(UTC))
