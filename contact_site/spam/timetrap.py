"""The time trap: when the form was served travels in a signed hidden field, `form_time`.

The token is signed with the app's SECRET_KEY under a salt of its own, and holds
nothing but its own timestamp, so it needs no session and no server-side state:
a form kept open for hours (or days) still carries a valid time, even across a
change of key (one signed with a key of SECRET_KEY_FALLBACKS verifies). A post
sooner than CONTACT_MIN_FILL_SECONDS after the form was served is spam; a token
that does not verify was made or altered by someone else: spam too.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from itsdangerous import BadSignature, TimestampSigner

from ..keys import oldest_first
from .clock import as_utc

FIELD = "form_time"
SALT = "contact_site.spam.form_time"
# What the token signs besides its timestamp: fixed, so a token carries no data.
PAYLOAD = "served"


class _Signer(TimestampSigner):
    """itsdangerous' signer under the site's keys (it signs with the current one, accepts
    any), whose clock can be set to a given moment when signing."""

    def __init__(self, at: datetime | None = None) -> None:
        super().__init__(oldest_first(), salt=SALT)
        self.at = at

    def get_timestamp(self) -> int:
        """The moment given, or the real clock's."""
        return super().get_timestamp() if self.at is None else int(as_utc(self.at).timestamp())


def issue_form_time(now: datetime | None = None) -> str:
    """A signed token of the time (now, unless given), for the form's hidden `form_time`."""
    return _Signer(now).sign(PAYLOAD).decode("ascii")


def check_form_time(token: str | None, now: datetime) -> str | None:
    """The time trap's reason code for this token, or None when it passes.

    `no_form_time` (suspect): the field is missing, as from a page served before
    this check existed; `time_tampered` (spam): the signature does not verify;
    `too_fast` (spam): posted less than CONTACT_MIN_FILL_SECONDS after serving.
    """
    minimum = current_app.config["CONTACT_MIN_FILL_SECONDS"]
    if not minimum:
        return None
    if not token:
        return "no_form_time"
    try:
        payload, served_at = _Signer().unsign(token, return_timestamp=True)
    except BadSignature:  # also a malformed token or a malformed timestamp in it
        return "time_tampered"
    if payload != PAYLOAD.encode():
        return "time_tampered"
    age = (as_utc(now) - served_at).total_seconds()
    # The token's time has whole seconds; a time in the future is too fast as well.
    if age < minimum:
        return "too_fast"
    return None
